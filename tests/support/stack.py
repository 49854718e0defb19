"""A running fleetsync for integration tests: a Git repo, a fleet spec, workers and beat.

Real processes on the real Redis and the session's local control planes. The
spec and the repository can be changed while everything runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import redis
import yaml

from devtools import fleet as devfleet
from shared.state.status import StatusStore
from tests.support.gitutil import GitRepo
from tests.support.slowproxy import SlowProxy

ROOT = Path(__file__).resolve().parents[2]


def configmap(name: str, namespace: str, data: dict[str, str]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": name, "namespace": namespace}, "data": data})


def app_files(namespace: str, value: str = "one", extra: bool = False) -> dict[str, str]:
    files = {
        "namespace.yaml": json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": namespace}}),
        "config.yaml": configmap("settings", namespace, {"value": value, "cluster": "${cluster_name}"}),
        "deployment.yaml": json.dumps({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}}),
    }
    if extra:
        files["extra.yaml"] = configmap("extra", namespace, {"x": "1"})
    return files


@dataclass
class Stack:
    """Spec + repo + processes; ``start_worker``/``start_beat`` add processes."""

    tmp: Path
    redis_url: str
    kubeconfigs: dict[str, str]
    interval: int = 2
    env_extra: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    proxies: list[SlowProxy] = field(default_factory=list)
    app: str = field(default_factory=lambda: "app" + uuid.uuid4().hex[:6])

    def __post_init__(self) -> None:
        self.namespace = f"ns-{self.app}"
        self.repo = GitRepo(self.tmp / "repo")
        self.write_app()
        self.repo.commit("initial")
        self.repo.push()
        self.spec = self.tmp / "fleet.yaml"

    # -- Git and spec -------------------------------------------------------------
    def write_app(self, value: str = "one", extra: bool = False) -> None:
        for name in ("namespace.yaml", "config.yaml", "deployment.yaml", "extra.yaml"):
            if (self.repo.path / "app" / name).exists():
                self.repo.remove(f"app/{name}")
        for name, text in app_files(self.namespace, value, extra).items():
            self.repo.write(f"app/{name}", text)

    def write_many(self, value: str, n: int) -> None:
        """``n`` more ConfigMaps, written with the next commit: an apply of many objects
        (on a slow wire, one that holds the lock a while)."""
        for i in range(n):
            self.repo.write(f"app/many-{i}.yaml", configmap(f"many-{i}", self.namespace,
                                                            {"v": value}))

    def commit(self, message: str, **kwargs: Any) -> str:
        self.write_app(**kwargs)
        sha = self.repo.commit(message)
        self.repo.push()
        return sha

    @contextmanager
    def slow_wire(self, clusters: list[str], delay: float) -> Iterator[None]:
        """While inside, specs written reach ``clusters`` through a wire that delays every
        request by ``delay`` (a real API server behind a slow proxy): applies take a while."""
        original = self.kubeconfigs
        slow = dict(original)
        for name in clusters:
            config = Path(original[name])
            server = yaml.safe_load(config.read_text())["clusters"][0]["cluster"]["server"]
            proxy = SlowProxy(server, delay)     # kept until stop(): a task in flight may
            self.proxies.append(proxy)           # still use it after the spec moves on
            slow[name] = str(proxy.kubeconfig(config, self.tmp / f"slow-{name}-{proxy.port}.yaml"))
        self.kubeconfigs = slow
        try:
            yield
        finally:
            self.kubeconfigs = original

    def write_spec(self, clusters: list[str], prune: bool = True, wait: str | None = None) -> None:
        lines = ["sources:", "  - name: git", f"    url: {self.repo.bare_url()}",
                 "    branch: main", f"    interval: {self.interval}s", "clusters:"]
        for name in clusters:
            lines += [f"  - name: {name}", f"    kubeconfig: {self.kubeconfigs[name]}",
                      "    labels: {team: t}", f"    interval: {self.interval}s"]
        lines += ["applications:", f"  - name: {self.app}", "    source: git", "    path: app",
                  "    clusters: {matchLabels: {team: t}}", f"    prune: {str(prune).lower()}"]
        # bare control planes run no controllers: a Deployment there never becomes
        # available, so health is only counted when a test asks for it
        lines += ["    wait: true", f"    timeout: {wait}"] if wait else ["    wait: false"]
        tmp = self.spec.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.spec)
        now = time.time() + len(clusters)
        os.utime(self.spec, (now, now))

    # -- processes ------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "FLEETSYNC_REDIS_URL": self.redis_url,
                "FLEETSYNC_FLEET": str(self.spec), "FLEETSYNC_CACHE_DIR": str(self.tmp / "cache"),
                "FLEETSYNC_LOCK_TTL": "6", "PYTHONPATH": str(ROOT), "FLEETSYNC_ALLOW_LOCAL_SOURCES": "true",
                "FLEETSYNC_FLOWER_DB": str(self.tmp / "flower.db"), **self.env_extra, **extra}

    def _spawn(self, name: str, argv: list[str], **env: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "scheduler.cli", *argv], cwd=ROOT,
                                env=self.env(**env), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def start_worker(self, name: str, *args: str, **env: str) -> subprocess.Popen:
        return self._spawn(name, ["worker", "-n", f"{name}-{self.app}@%h", "-c", "2",
                                  "-l", "INFO", "--without-gossip", *args], **env)

    def start_beat(self) -> subprocess.Popen:
        return self._spawn("beat", ["beat", "-l", "INFO"])

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(30)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc, signal.SIGTERM)
        self.procs.clear()
        for proxy in self.proxies:
            proxy.close()
        self.proxies.clear()

    # -- observing --------------------------------------------------------------------
    @property
    def store(self) -> StatusStore:
        return StatusStore(redis.Redis.from_url(self.redis_url, decode_responses=True))

    def status(self, cluster: str) -> dict:
        return self.store.get_status(self.app, cluster).to_dict()

    def history(self, cluster: str) -> list[dict]:
        return self.store.history(self.app, cluster)

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60) -> float:
        started = time.monotonic()
        stalled = 0.0       # time this process was not run at all (a stalled machine)
        while time.monotonic() - started < timeout + stalled:
            if check():
                return time.monotonic() - started
            before = time.monotonic()
            time.sleep(0.25)
            overslept = time.monotonic() - before - 0.25
            if overslept > 1.0:     # the machine stalled: its time is not the system's
                stalled += overslept
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.tmp.glob("*.log"))
        raise AssertionError(f"{what} not reached in {timeout}s (+{stalled:.0f} s stalled); "
                             f"statuses {[self.status(c) for c in self.kubeconfigs]}\n{logs}")

    def ready_at(self, cluster: str, revision: str) -> bool:
        status = self.status(cluster)
        return status["phase"] == "Ready" and status["revision"] == revision


def free_port() -> int:
    return devfleet.free_port()
