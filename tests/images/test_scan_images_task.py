"""``fleetsync.scan_images`` on real workers: a real registry, a real Git server with push.

Tags 1.0.0, 1.1.0 and 2.0.0-rc.1 pushed with oras; policy ``^1``: the task makes one
commit setting 1.1.0 (only marked lines), asks for the source's fetch at once, and
``images status`` names the new tag in Git; a policy that matches no tag and one whose
registry is unreachable are recorded errors, named, and left out of the commit. The
repository's lease keeps a second push off it: a worker that finds the lease held
waits, then pushes; two workers racing make one commit between them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis

from shared import tasks_api
from shared.celery_app import make_app
from shared.settings import Settings
from shared.state import images as image_records, keys
from shared.state.locks import Leases
from shared.state.status import StatusStore
from tests.conftest import ROOT, new_redis_db, start_worker, stop_worker
from tests.support.githttp import GitHttpServer
from tests.support.gitutil import GitRepo, git
from tests.support.registry import Registry, registry, unique_repo  # noqa: F401

pytestmark = [pytest.mark.slow]
MARK = '# {"$imagepolicy": "podinfo"}'


def _wait(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


class Setup:
    def __init__(self, tmp: Path, registry: Registry, redis_url: str) -> None:
        self.tmp, self.redis_url = tmp, redis_url
        self.repo_path = unique_repo("images")
        for tag in ("1.0.0", "1.1.0", "2.0.0-rc.1"):
            (tmp / "app.yaml").write_text(f"tag: {tag}\n")
            registry.oras("push", f"{registry.plain.host}/{self.repo_path}:{tag}", "app.yaml",
                          "--plain-http", cwd=tmp)
        self.image = f"{registry.plain.host}/{self.repo_path}"
        self.work = GitRepo(tmp / "work", bare_path=tmp / "served" / "fleet.git")
        self.work.write("clusters/web.yaml", "# the web app\nspec:\n  containers:\n"
                        f"    - image: {self.image}:1.0.0 {MARK}\n      name: web  # keep\n")
        self.work.write("README.md", "# fleet\n")
        self.work.commit("first")
        self.work.push()
        self.first = self.head()
        self.server = GitHttpServer(tmp / "served", tls=True)

    def spec(self, url: str) -> Path:
        spec = self.tmp / "fleet.yaml"
        spec.write_text(f"""\
images:
  - {{name: podinfo, repository: {self.image}, policy: {{semver: "^1"}}, insecure: true,
     interval: 1h}}
  - {{name: nomatch, repository: {self.image}, policy: {{semver: "^9"}}, insecure: true}}
  - {{name: gone, repository: "127.0.0.1:9/apps/gone", policy: {{semver: "^1"}},
     insecure: true}}
sources:
  - name: fleet
    url: {url}
    branch: main
    interval: 1h
    auth: {{usernameEnv: GIT_USER, passwordEnv: GIT_PASSWORD}}
    imageUpdates:
      path: clusters/
      author: {{name: fleetsync, email: fleetsync@example.com}}
clusters: []
applications: []
""")
        return spec

    def head(self) -> str:
        return git("--git-dir", str(self.work.bare_path), "rev-parse", "main").strip()

    def commits_since(self, sha: str) -> list[str]:
        out = git("--git-dir", str(self.work.bare_path), "rev-list", f"{sha}..main")
        return out.split()

    def diff(self, sha: str) -> list[str]:
        out = git("--git-dir", str(self.work.bare_path), "show", "--format=", "-U0", sha)
        return [ln for ln in out.splitlines()
                if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


@pytest.fixture
def setup(tmp_path: Path, registry: Registry, redis_url: str  # noqa: F811
          ) -> Iterator[tuple[Setup, dict[str, str]]]:
    s = Setup(tmp_path, registry, new_redis_db(redis_url))
    with s.server:
        spec = s.spec(s.server.url("fleet.git"))
        env = {"FLEETSYNC_FLEET": str(spec), "FLEETSYNC_CACHE_DIR": str(tmp_path / "cache"),
               "GIT_SSL_CAINFO": s.server.ca_file, "GIT_USER": "fleet",
               "GIT_PASSWORD": "s3cret-pw"}
        yield s, env


def _workers(s: Setup, env: dict[str, str], n: int) -> list[subprocess.Popen]:
    procs = [start_worker(s.redis_url, f"images{i}-{os.getpid()}", "reconcile,fetch",
                          concurrency=1, FLEETSYNC_CACHE_DIR=str(s.tmp / f"cache{i}"),
                          **{k: v for k, v in env.items() if k != "FLEETSYNC_CACHE_DIR"})
             for i in range(n)]
    return procs


def _cli(env: dict[str, str], redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", "images", *args], cwd=ROOT,
                          env={**os.environ, **env, "FLEETSYNC_REDIS_URL": redis_url,
                               "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)


def test_one_scan_one_commit_fetched_at_once_errors_named(setup) -> None:
    s, env = setup
    procs = _workers(s, env, 1)
    try:
        started = time.monotonic()
        done = _cli(env, s.redis_url, "scan", "--timeout", "180")
        print(f"images scan (3 policies, one commit) took {time.monotonic() - started:.2f} s")
        assert done.returncode == 1, done.stderr      # two policies failed: exit 1
        lines = done.stdout.splitlines()
        assert any(ln.startswith("podinfo: 1.1.0 ") and "by semver ^1" in ln for ln in lines), \
            done.stdout
        assert any(ln.startswith("nomatch: error: ") for ln in lines), done.stdout
        assert any(ln.startswith("gone: error: ") and "127.0.0.1:9" in ln for ln in lines)
        assert any(ln.startswith("fleet: commit ") for ln in lines), done.stdout
        assert "  left out: nomatch: " in done.stdout and "  left out: gone: " in done.stdout
        commits = s.commits_since(s.first)
        assert len(commits) == 1
        assert s.diff(commits[0]) == [
            f"-    - image: {s.image}:1.0.0 {MARK}", f"+    - image: {s.image}:1.1.0 {MARK}"]
        store = StatusStore(redis.Redis.from_url(s.redis_url, decode_responses=True))
        _wait("the source fetched at the pushed commit",
              lambda: (store.source_revision("fleet") or ("",))[0] == commits[0])
        found = json.loads(_cli(env, s.redis_url, "status", "-o", "json").stdout)
        by_name = {p["name"]: p for p in found["policies"]}
        assert by_name["podinfo"]["tag"] == "1.1.0"
        assert by_name["podinfo"]["git"][0]["file"] == "clusters/web.yaml"
        assert by_name["podinfo"]["git"][0]["line"] == 4
        assert by_name["podinfo"]["git"][0]["value"] == f"{s.image}:1.1.0"
        assert by_name["nomatch"]["error"] and by_name["gone"]["error"]
        assert found["sources"][0]["commit"] == commits[0]
        table = _cli(env, s.redis_url, "status").stdout
        assert f"clusters/web.yaml:4 = {s.image}:1.1.0" in table
        assert "left out: gone: " in table
        again = _cli(env, s.redis_url, "scan", "podinfo", "-o", "json")
        result = json.loads(again.stdout)
        assert result["sources"][0]["commit"] is None and s.commits_since(s.first) == commits
    finally:
        for proc in procs:
            stop_worker(proc)


def test_a_worker_waits_for_the_repository_lease_then_pushes(setup) -> None:
    s, env = setup
    r = redis.Redis.from_url(s.redis_url, decode_responses=True)
    leases = Leases(r)
    lock = keys.image_push_lock(s.server.url("fleet.git"))
    assert leases.acquire(lock, "someone-else", 120_000)
    procs = _workers(s, env, 1)
    try:
        app = make_app(Settings(redis_url=s.redis_url))
        sent = app.send_task(tasks_api.SCAN_IMAGES, args=[["podinfo"]], kwargs={"force": True})
        _wait("podinfo scanned", lambda: (image_records.load(r, "podinfo") or {}).get("tag"))
        assert s.head() == s.first          # scanned, and waiting for the lease
        leases.release(lock, "someone-else")
        result = sent.get(timeout=120)
        assert result["sources"][0]["waited_for_lock"] is True
        assert s.commits_since(s.first) == [result["sources"][0]["commit"]]
    finally:
        for proc in procs:
            stop_worker(proc)


def test_two_workers_racing_on_one_repository_make_one_commit(setup) -> None:
    s, env = setup
    procs = _workers(s, env, 2)
    try:
        app = make_app(Settings(redis_url=s.redis_url))
        for i in range(2):
            app.send_task("fleetsync.ping").get(timeout=60)
        sent = [app.send_task(tasks_api.SCAN_IMAGES, args=[["podinfo"]], kwargs={"force": True})
                for _ in range(2)]
        results = [task.get(timeout=180) for task in sent]
        commits = [r["sources"][0]["commit"] for r in results]
        assert len([c for c in commits if c]) == 1, results
        assert s.commits_since(s.first) == [c for c in commits if c]
    finally:
        for proc in procs:
            stop_worker(proc)


def test_local_scan_commits_from_this_process_and_keeps_no_secret(setup) -> None:
    s, env = setup
    started = time.monotonic()
    done = _cli(env, s.redis_url, "scan", "podinfo", "--local")
    print(f"images scan --local (1 policy, one commit) took {time.monotonic() - started:.2f} s")
    assert done.returncode == 0, done.stdout + done.stderr
    commits = s.commits_since(s.first)
    assert len(commits) == 1 and f"fleet: commit {commits[0][:12]} pushed to main" in done.stdout
    r = redis.Redis.from_url(s.redis_url, decode_responses=True)
    assert (image_records.load(r, "podinfo") or {}).get("tag") == "1.1.0"
    stored = " ".join(str(r.get(k)) for k in r.scan_iter("fleetsync:*") if r.type(k) == "string")
    assert "fleetsync:image-updates:fleet" in list(r.scan_iter("fleetsync:image-updates:*"))
    assert "s3cret-pw" not in stored and "s3cret-pw" not in done.stdout + done.stderr
    status = _cli(env, s.redis_url, "status")
    assert f"source fleet (push to main): commit {commits[0][:12]}" in status.stdout
