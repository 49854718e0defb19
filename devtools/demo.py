"""``fleetsync demo``: the GitOps tutorial, walked end to end on a local fleet.

It starts Redis and three local clusters with workloads (production, staging,
development: controllers, scheduler and kwok Nodes, so Pods run), writes the
tutorial's repository into a local Git repository, writes a fleet spec for it,
starts two workers, beat and Flower, and then walks the tutorial's steps, each
checked against the live clusters (with ``kubectl``, as a user would:
Deployments and their Pods) and timed: initial sync, drift corrected, an image
update rolled out Pod by Pod, a broken image that leaves production Degraded
until ``git revert``, a rollback, and prune. Everything it started is stopped at
the end (or on Ctrl-C with ``--keep``).

The Git source is polled every ``fetch_interval`` (1 s) while beat reconciles
each cluster every ``interval`` (5 s): the short poll stands in for the webhook
that would announce a push to a real forge, and keeps the walk under a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from devtools import fleet as devfleet
from devtools import tutorial
from devtools.demo_pods import Pod, PodWatch, pods_of
from shared.state.redisconn import connect
from shared.state.status import StatusStore

CLUSTERS = list(tutorial.CLUSTERS)
APP = "platform"
OLD_TAG, NEW_TAG, BROKEN_TAG = "1.25.3", "1.27.0", "broken"
Say = Callable[[str], None]


class DemoFailed(RuntimeError):
    """A step did not happen in time; the message says which and what was seen."""


@dataclass
class Demo:
    state_dir: Path
    interval: int = 5               # beat reconciles each cluster this often
    fetch_interval: int = 1         # and polls the Git source this often (a webhook's stand-in)
    say: Say = print
    fleet: devfleet.FleetState | None = None
    services: list[devfleet.Proc] = field(default_factory=list)
    flower_url: str = ""
    commits: dict[str, str] = field(default_factory=dict)   # step -> the commit it made

    @property
    def repo(self) -> Path:
        return self.state_dir / "gitops"

    @property
    def bare(self) -> Path:
        return self.state_dir / "gitops.git"

    @property
    def spec(self) -> Path:
        return self.state_dir / "fleet.yaml"

    # -- setting up -------------------------------------------------------------
    def start(self) -> None:
        self.fleet = devfleet.up(CLUSTERS, self.state_dir, progress=self.say, workloads=True)
        self._make_repo()
        self._write_spec()
        self._start_services()

    def _git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.repo, check=True, capture_output=True,
                              text=True).stdout.strip()

    def _make_repo(self) -> None:
        shutil.rmtree(self.repo, ignore_errors=True)
        shutil.rmtree(self.bare, ignore_errors=True)
        self.repo.mkdir(parents=True)
        self._git("init", "-q", "-b", "main")
        self._git("config", "user.name", "Demo Operator")
        self._git("config", "user.email", "operator@example.com")
        tutorial.write_tutorial(self.repo, web_image_tag=OLD_TAG)
        self.commit("Initial fleet layout")
        subprocess.run(["git", "clone", "-q", "--bare", str(self.repo), str(self.bare)], check=True)
        self._git("remote", "add", "origin", str(self.bare))

    def commit(self, message: str) -> str:
        self._git("add", "-A")
        self._git("commit", "-q", "-m", message)
        if (self.bare / "HEAD").exists():
            self._git("push", "-q", "origin", "main")
        return self._git("rev-parse", "HEAD")

    def push(self) -> str:
        self._git("push", "-q", "origin", "main")
        return self._git("rev-parse", "HEAD")

    def _write_spec(self) -> None:
        assert self.fleet is not None
        lines = ["sources:", "  - name: gitops", f"    url: file://{self.bare}",
                 "    branch: main", f"    interval: {self.fetch_interval}s", "clusters:"]
        for name in CLUSTERS:
            lines += [f"  - name: {name}", f"    kubeconfig: {self.fleet.clusters[name]}",
                      f"    labels: {{env: {name}}}", f"    interval: {self.interval}s"]
        lines += ["applications:", f"  - name: {APP}", "    source: gitops",
                  "    path: clusters/${cluster_name}",
                  f"    clusters: {{names: [{', '.join(CLUSTERS)}]}}", "    prune: true"]
        self.spec.write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        assert self.fleet is not None
        return {**os.environ, "FLEETSYNC_REDIS_URL": self.fleet.redis_url,
                "FLEETSYNC_FLEET": str(self.spec),
                "FLEETSYNC_CACHE_DIR": str(self.state_dir / "cache"),
                "FLEETSYNC_ALLOW_LOCAL_SOURCES": "true",     # the tutorial repository is on disk
                # kwok's Pods are Ready within a second: the first health look comes sooner
                "FLEETSYNC_HEALTH_POLL": os.environ.get("FLEETSYNC_HEALTH_POLL", "1"),
                "PROMETHEUS_MULTIPROC_DIR": str(self._metrics_dir())}

    def _metrics_dir(self) -> Path:
        path = self.state_dir / "metrics"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _start_services(self) -> None:
        cli = [sys.executable, "-m", "scheduler.cli"]
        port = devfleet.free_port()
        self.flower_url = f"http://127.0.0.1:{port}"
        commands = {
            "worker-1": [*cli, "worker", "-n", "demo-1@%h", "-c", "2", "-l", "INFO"],
            "worker-2": [*cli, "worker", "-n", "demo-2@%h", "-c", "2", "-l", "INFO"],
            "beat": [*cli, "beat", "-l", "INFO",
                     "--schedule", str(self.state_dir / "beat-schedule")],
            "flower": [*cli, "flower", "--port", str(port)],
        }
        for name, argv in commands.items():
            self.services.append(devfleet.spawn(self.state_dir / "logs" / f"{name}.log", name, argv,
                                        self.env()))
        self.say(f"Started 2 workers, beat and Flower ({self.flower_url}); logs in "
                 f"{self.state_dir / 'logs'}")

    def stop(self) -> None:
        for proc in self.services:      # all at once: the workers' warm shutdowns overlap
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        devfleet.stop_processes(self.services, grace=10)
        self.services.clear()
        devfleet.down(self.state_dir, progress=lambda _: None)

    # -- looking at the fleet ----------------------------------------------------
    def kubectl(self, cluster: str, *args: str) -> str:
        assert self.fleet is not None
        proc = subprocess.run([kubectl_binary(), "--kubeconfig", self.fleet.clusters[cluster], *args],
                              capture_output=True, text=True, timeout=30)
        return proc.stdout if proc.returncode == 0 else ""

    def deployment(self, cluster: str, name: str) -> dict | None:
        out = self.kubectl(cluster, "get", "deployment", name, "-n", tutorial.APP_NAMESPACE,
                           "-o", "json")
        return json.loads(out) if out else None

    def _pod_argv(self, cluster: str, app: str) -> list[str]:
        assert self.fleet is not None
        return [kubectl_binary(), "--kubeconfig", self.fleet.clusters[cluster], "get", "pods",
                "-n", tutorial.APP_NAMESPACE, "-l", f"app={app}"]

    def pods(self, cluster: str, app: str = "web-app") -> list[Pod]:
        """``app``'s Pods on ``cluster`` (none when kubectl fails)."""
        proc = subprocess.run([*self._pod_argv(cluster, app), "-o", "json"],
                              capture_output=True, text=True, timeout=30)
        return pods_of(proc.stdout if proc.returncode == 0 else "")

    def watch_pods(self, cluster: str, app: str = "web-app") -> PodWatch:
        return PodWatch(self._pod_argv(cluster, app))

    def statuses(self) -> dict[str, dict]:
        assert self.fleet is not None
        store = StatusStore(connect(self.fleet.redis_url))
        return {s.cluster: s.to_dict() for s in store.all_statuses() if s.app == APP}

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if check():
                return time.monotonic() - started
            time.sleep(0.5)
        raise DemoFailed(f"{what}: not done after {timeout:.0f}s. Status: "
                         f"{json.dumps(self.statuses(), indent=1)}\nLogs: {self.state_dir / 'logs'}")


def kubectl_binary() -> str:
    beside = Path(sys.executable).with_name("kubectl")
    return str(beside) if beside.exists() else (shutil.which("kubectl") or "kubectl")

