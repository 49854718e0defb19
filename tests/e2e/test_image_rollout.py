"""Image automation end to end: a registry tag becomes one commit, rolled out through two waves.

Real workers and beat on the real Redis, a real registry (tags pushed with oras), a real
Git server over HTTPS with push (``git http-backend``), and two clusters with
controllers, a scheduler and kwok Nodes (``work-1`` wave 1, ``work-2`` wave 2). Beat's
first scan of policy ``^1`` over 1.0.0, 1.1.0 and 2.0.0-rc.1 commits 1.1.0 (only the
marked line), the source is fetched at once and the commit goes wave by wave. Then the
policy is switched to a tag that kwok never runs (``broken``): the scan commits it, wave
1 turns Degraded and the rollout halts there; wave 2 keeps 1.1.0, and ``images status``
says which cluster runs which tag.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Iterator

import pytest

from tests.conftest import ROOT, new_redis_db
from tests.support.githttp import GitHttpServer
from tests.support.gitutil import git
from tests.support.registry import Registry, registry, unique_repo  # noqa: F401
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
MARK = '# {"$imagepolicy": "podinfo"}'
WAVES = {"work-1": "staging", "work-2": "production"}


@pytest.fixture(scope="module")
def second_cluster(workload_fleet, tmp_path_factory) -> Iterator[str]:
    from devtools import fleet as devfleet

    state_dir = tmp_path_factory.mktemp("image-fleet")
    state = devfleet.up(["work-2"], state_dir, progress=lambda _: None, workloads=True)
    yield state.clusters["work-2"]
    devfleet.down(state_dir, progress=lambda _: None)


def deployment(namespace: str, image: str) -> str:
    return f"""# the web app: only the marked line is the robot's
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {namespace}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: web
          image: {image} {MARK}
"""


def spec(s: Stack, url: str, image: str, policy: str) -> str:
    lines = ["images:", f"  - {{name: podinfo, repository: {image}, policy: {policy},",
             "     insecure: true, interval: 1h}",
             "sources:", "  - name: git", f"    url: {url}", "    branch: main",
             "    interval: 1h", "    auth: {usernameEnv: GIT_USER, passwordEnv: GIT_PASSWORD}",
             "    imageUpdates: {path: app, author: {name: fleetsync, email: bot@example.com}}",
             "clusters:"]
    for name, env in WAVES.items():
        lines += [f"  - name: {name}", f"    kubeconfig: {s.kubeconfigs[name]}",
                  f"    labels: {{env: {env}}}", "    interval: 2s"]
    lines += ["applications:", f"  - name: {s.app}", "    source: git", "    path: app",
              f"    clusters: {{names: [{', '.join(WAVES)}]}}", "    wait: true",
              "    timeout: 20s", "    rollout:", "      waves:",
              "        - clusters: {names: [work-1]}",
              "        - clusters: {matchLabels: {env: production}}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def stack(workload_fleet, second_cluster, redis_url, registry: Registry,  # noqa: F811
          tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("image-rollout")
    s = Stack(tmp, new_redis_db(redis_url),
              {"work-1": workload_fleet.clusters["work-1"], "work-2": second_cluster})
    s.image_repo = unique_repo("images")  # type: ignore[attr-defined]
    s.image = f"{registry.plain.host}/{s.image_repo}"  # type: ignore[attr-defined]
    for tag in ("1.0.0", "1.1.0", "2.0.0-rc.1"):
        (tmp / "app.yaml").write_text(f"tag: {tag}\n")
        registry.oras("push", f"{s.image}:{tag}", "app.yaml", "--plain-http", cwd=tmp)
    for name in ("config.yaml", "extra.yaml"):
        if (s.repo.path / "app" / name).exists():
            s.repo.remove(f"app/{name}")
    s.repo.write("app/deployment.yaml", deployment(s.namespace, f"{s.image}:1.0.0"))
    s.first = s.repo.commit("web at 1.0.0")  # type: ignore[attr-defined]
    s.repo.push()
    with GitHttpServer(tmp, tls=True) as served:
        s.url = served.url(s.repo.bare_path.name)  # type: ignore[attr-defined]
        s.env_extra.update(GIT_SSL_CAINFO=served.ca_file, GIT_USER="fleet",
                           GIT_PASSWORD="s3cret-pw")
        s.spec.write_text(spec(s, s.url, s.image, '{semver: "^1"}'))  # type: ignore[attr-defined]
        s.start_worker("w1")
        s.start_worker("w2")
        s.start_beat()
        try:
            yield s
        finally:
            s.stop()


def cli(s: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT, env=s.env(),
                          capture_output=True, text=True, timeout=300)


def remote(s: Stack, *args: str) -> str:
    return git("--git-dir", str(s.repo.bare_path), *args)


def rollout(s: Stack) -> dict:
    done = cli(s, "rollout", "status", s.app, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def entry(s: Stack, cluster: str, result: str, revision: str) -> dict:
    found = [e for e in s.history(cluster) if e["result"] == result and e["revision"] == revision]
    assert found, (cluster, result, revision, s.history(cluster)[:5])
    return found[-1]


def only_marked(s: Stack, sha: str) -> list[str]:
    out = remote(s, "show", "--format=", "-U0", sha)
    lines = [ln for ln in out.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert lines and all(MARK in ln for ln in lines), lines
    return lines


def test_beat_s_scan_commits_1_1_0_and_it_rolls_out_wave_by_wave(stack: Stack) -> None:
    s = stack
    first = s.first  # type: ignore[attr-defined]
    pushed = s.wait("beat's scan pushed a commit",
                    lambda: remote(s, "rev-parse", "main").strip() != first, 120)
    commits = remote(s, "rev-list", f"{first}..main").split()
    assert len(commits) == 1
    image = s.image  # type: ignore[attr-defined]
    assert only_marked(s, commits[0]) == [f"-          image: {image}:1.0.0 {MARK}",
                                          f"+          image: {image}:1.1.0 {MARK}"]
    new = commits[0]
    waves = s.wait("work-2 Ready at the image commit", lambda: s.ready_at("work-2", new), 240)
    print(f"commit pushed {pushed:.1f} s after the workers started; both waves Ready "
          f"{waves:.1f} s later")
    assert entry(s, "work-1", "Ready", new)["finished_at"] <= \
        entry(s, "work-2", "Gate", new)["started_at"]
    s.wait("rollout complete", lambda: rollout(s)["state"] == "Complete")
    s.commit_1_1_0 = new  # type: ignore[attr-defined]


def test_a_broken_image_halts_the_rollout_after_wave_one(stack: Stack, registry: Registry  # noqa: F811
                                                         ) -> None:
    s = stack
    good = s.commit_1_1_0  # type: ignore[attr-defined]
    (s.tmp / "app.yaml").write_text("tag: broken\n")
    registry.oras("push", f"{s.image}:broken", "app.yaml", "--plain-http",  # type: ignore[attr-defined]
                  cwd=s.tmp)
    s.spec.write_text(spec(s, s.url, s.image,  # type: ignore[attr-defined]
                           "{alphabetical: asc}, filterTags: {pattern: '^(1[.]1[.]0|broken)$'}"))
    done = cli(s, "images", "scan", "podinfo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "podinfo: broken (was 1.1.0)" in done.stdout, done.stdout
    bad = remote(s, "rev-parse", "main").strip()
    assert bad != good and f"git: commit {bad[:12]} pushed to main" in done.stdout
    only_marked(s, bad)
    s.wait("work-1 Degraded on the broken image", lambda: s.status("work-1")["phase"] ==
           "Degraded" and s.status("work-1")["revision"] == bad, 180)
    s.wait("the rollout halted", lambda: rollout(s)["state"] == "Halted")
    assert rollout(s)["halted"].startswith("Halted at wave 1: work-1 Degraded"), rollout(s)
    assert s.ready_at("work-2", good)
    s.wait("images status knows both clusters' tags", lambda: {
        c["cluster"]: c["tag"] for c in json.loads(cli(s, "images", "status", "-o", "json")
                                                   .stdout)["policies"][0]["clusters"]}
        == {"work-1": "broken", "work-2": "1.1.0"}, 60)
    table = cli(s, "images", "status").stdout
    assert "clusters at broken: work-1 (Degraded)" in table, table
    assert "clusters at 1.1.0: work-2 (Ready)" in table, table
