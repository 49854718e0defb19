"""Fleet benchmark: K local clusters x A applications, real workers, beat and Redis.

    .venv/bin/python bench/fleet_bench.py --clusters 1 --apps 1000 --workers 2 --json out.json

Each application is the Flux benchmark's app: a Deployment scaled to zero, a
ServiceAccount, a Service and an Ingress, on bare control planes. With
``--replicas N`` the Deployment has N replicas and the clusters run workloads
(controllers, scheduler, kwok with 3 fake Nodes), so every app has running Pods.
Measured:

    cold_sync_s           start of beat until every sync unit is Ready
    noop_pass_s           one reconcile of the whole fleet with nothing changed
    noop_writes           persisted writes during that pass (must be 0)
    noop_requests_per_app API requests per sync unit during that pass
    commit_to_applied_s   a one-line change committed to one app until it is live
                          (the sync is requested right after the commit, as a Git webhook would)
    kubectl_loop_s        the same apps applied to a fresh cluster by a loop of
                          `kubectl apply --server-side` (what users script without fleetsync)
    worker_rss_mb         peak resident memory of one worker (main process and pool)
    cold_available_s      (--replicas only) start of beat until every Deployment is available
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import fleet as devfleet  # noqa: E402
from shared.redisconn import connect  # noqa: E402
from shared.status import StatusStore  # noqa: E402

NAMESPACE = "bench"


def app_objects(name: str, port: int = 80, replicas: int = 0) -> list[dict]:
    labels = {"app": name}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": NAMESPACE},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"serviceAccountName": name,
                                        "containers": [{"name": "app", "image": "nginx:1.25"}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
         "spec": {"selector": labels, "ports": [{"port": port, "targetPort": 80}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
         "metadata": {"name": name, "namespace": NAMESPACE},
         "spec": {"rules": [{"host": f"{name}.example.com", "http": {"paths": [{
             "path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": name, "port": {"number": port}}}}]}}]}},
    ]


def write_app(repo: Path, name: str, port: int = 80, replicas: int = 0) -> None:
    path = repo / "apps" / name / "app.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n---\n".join(json.dumps(o) for o in app_objects(name, port, replicas))
                    + "\n")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(root: Path, apps: list[str], replicas: int = 0) -> tuple[Path, Path]:
    repo, bare = root / "repo", root / "repo.git"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "bench")
    git(repo, "config", "user.email", "bench@example.com")
    for name in apps:
        write_app(repo, name, replicas=replicas)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "apps")
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    git(repo, "remote", "add", "origin", str(bare))
    return repo, bare


def write_spec(path: Path, bare: Path, clusters: dict[str, str], apps: list[str]) -> None:
    lines = ["sources:", "  - name: bench", f"    url: file://{bare}", "    branch: main",
             "    interval: 10m", "clusters:"]
    for name, kubeconfig in clusters.items():
        lines += [f"  - name: {name}", f"    kubeconfig: {kubeconfig}", "    labels: {bench: 'yes'}",
                  "    interval: 10m"]
    lines.append("applications:")
    for name in apps:
        lines += [f"  - name: {name}", "    source: bench", f"    path: apps/{name}",
                  "    clusters: {matchLabels: {bench: 'yes'}}"]
    path.write_text("\n".join(lines) + "\n")


def kubectl() -> str:
    return str(Path(sys.executable).with_name("kubectl"))


def create_namespace(kubeconfig: str) -> None:
    subprocess.run([kubectl(), "--kubeconfig", kubeconfig, "create", "namespace", NAMESPACE],
                   check=True, capture_output=True)


class RssSampler(threading.Thread):
    """Peak RSS of each worker's process tree, sampled from /proc."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak_kb, self.stop = pids, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            for pid in self.pids:
                self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in _tree(pid)))


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out += _tree(int(child))
    return out


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args, self.root = args, root
        self.apps = [f"app-{i:04d}" for i in range(args.apps)]
        self.procs: list[subprocess.Popen] = []
        self.own_commands = 0

    def env(self) -> dict[str, str]:
        return {**os.environ, "FLEETSYNC_REDIS_URL": self.fleet.redis_url,
                "FLEETSYNC_FLEET": str(self.root / "fleet.yaml"),
                "FLEETSYNC_CACHE_DIR": str(self.root / "cache"), "FLEETSYNC_LOG_LEVEL": "WARNING",
                "FLEETSYNC_ALLOW_LOCAL_SOURCES": "true",
                "PYTHONPATH": str(ROOT)}

    def spawn(self, name: str, *argv: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "scheduler.cli", *argv], cwd=ROOT,
                                env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def units_done(self, since: float, count_writes: bool = False) -> tuple[int, int, int]:
        """(units synced since ``since`` and Ready, writes, requests) over the whole fleet."""
        store = StatusStore(connect(self.fleet.redis_url))
        done = writes = requests = 0
        statuses = store.all_statuses()
        self.own_commands += 1 + len(statuses)        # SMEMBERS, then HGETALL per unit
        for status in statuses:
            if status.phase == "Ready" and status.last_synced_at and _ts(status.last_synced_at) >= since:
                done += 1
                if count_writes:
                    self.own_commands += 1
                    entry = store.history(status.app, status.cluster, limit=1)[0]
                    writes += entry.get("writes") or 0
                    requests += entry.get("requests") or 0
        return done, writes, requests

    def lock_waits(self) -> list[float]:
        """Request-to-lock time of the latest sync of every unit."""
        store = StatusStore(connect(self.fleet.redis_url))
        waits = []
        for status in store.all_statuses():
            entries = store.history(status.app, status.cluster, limit=1)
            if entries and entries[0].get("lock_wait_s") is not None:
                waits.append(entries[0]["lock_wait_s"])
        return sorted(waits)

    def redis_commands(self) -> int:
        """Commands Redis processed (scripts' commands included), less this benchmark's own
        polling, so that the figure is fleetsync's alone."""
        self.own_commands += 1
        total = int(connect(self.fleet.redis_url).info("stats")["total_commands_processed"])
        return total - self.own_commands

    def wait_all(self, since: float, what: str, timeout: float) -> float:
        total = len(self.apps) * self.args.clusters
        started, last = time.monotonic(), -1
        while time.monotonic() - started < timeout:
            done = self.units_done(since)[0]
            if done != last:
                print(f"  {what}: {done}/{total} units", flush=True)
                last = done
            if done >= total:
                return time.monotonic() - started
            time.sleep(0.5)
        raise SystemExit(f"{what}: only {last}/{total} units after {timeout:.0f}s (logs in {self.root})")

    def run(self) -> dict:
        names = [f"bench-{i}" for i in range(1, self.args.clusters + 1)]
        print(f"Starting {len(names)} cluster(s) and Redis", flush=True)
        self.fleet = devfleet.up(names, self.root / "fleet", progress=lambda _: None,
                                 workloads=self.args.replicas > 0)
        for kubeconfig in self.fleet.clusters.values():
            create_namespace(kubeconfig)
        repo, bare = make_repo(self.root, self.apps, self.args.replicas)
        write_spec(self.root / "fleet.yaml", bare, self.fleet.clusters, self.apps)
        workers = [self.spawn(f"worker-{i}", "worker", "-n", f"bench-{i}@%h", "-c",
                              str(self.args.concurrency), "-l", "WARNING")
                   for i in range(1, self.args.workers + 1)]
        sampler = RssSampler([w.pid for w in workers])
        sampler.start()
        time.sleep(2)
        print("Cold sync (beat's first tick)", flush=True)
        t0 = time.time()
        self.spawn("beat", "beat", "-l", "WARNING")
        self.wait_all(t0, "cold sync", self.args.timeout)
        cold = time.time() - t0
        cold_available = self.wait_available(t0) if self.args.replicas > 0 else None
        cold_waits = self.lock_waits()

        print("No-op pass", flush=True)
        commands = self.redis_commands()
        t1 = time.time()
        from shared.celery_app import make_app
        from shared.settings import Settings

        celery = make_app(Settings(redis_url=self.fleet.redis_url))
        for name in names:
            celery.send_task("fleetsync.reconcile_cluster", args=[name], kwargs={"trigger": "api"})
        self.wait_all(t1, "no-op pass", self.args.timeout)
        noop = time.time() - t1
        noop_commands = self.redis_commands() - commands
        _, writes, requests = self.units_done(t1, count_writes=True)

        print("Commit to applied", flush=True)
        write_app(repo, self.apps[0], port=8080, replicas=self.args.replicas)
        t2 = time.time()
        git(repo, "commit", "-q", "-am", "app-0000: port 8080")
        git(repo, "push", "-q", "origin", "main")
        celery.send_task("fleetsync.sync", args=[self.apps[0], None], kwargs={"trigger": "webhook"})
        kubeconfig = next(iter(self.fleet.clusters.values()))
        while "8080" not in _svc_port(kubeconfig, self.apps[0]):
            if time.time() - t2 > 120:
                raise SystemExit("the change was not applied within 120s")
            time.sleep(0.1)
        commit_to_applied = time.time() - t2
        sampler.stop.set()
        celery.close()
        for proc in self.procs:
            _stop(proc)

        kubectl_s = 0.0
        if not self.args.skip_kubectl:
            print("kubectl loop on a fresh cluster", flush=True)
            kubectl_s = self.kubectl_loop(repo)
        devfleet.down(self.root / "fleet", progress=lambda _: None)
        units = len(self.apps) * self.args.clusters
        return {"clusters": self.args.clusters, "apps": self.args.apps,
                "workers": self.args.workers, "concurrency": self.args.concurrency,
                "cold_sync_s": round(cold, 2), "noop_pass_s": round(noop, 2),
                "noop_writes": writes, "noop_requests_per_app": round(requests / units, 2),
                "noop_redis_commands_per_unit": round(noop_commands / units, 1),
                "cold_lock_wait_p50_s": _pct(cold_waits, 0.5),
                "cold_lock_wait_p95_s": _pct(cold_waits, 0.95),
                "cold_lock_wait_max_s": _pct(cold_waits, 1.0),
                "commit_to_applied_s": round(commit_to_applied, 2),
                "kubectl_loop_s": round(kubectl_s, 2),
                "kubectl_vs_fleetsync_cold": round(kubectl_s / cold * self.args.clusters, 1),
                "worker_rss_mb": round(sampler.peak_kb / 1024, 1),
                **({"replicas": self.args.replicas, "cold_available_s": cold_available}
                   if self.args.replicas > 0 else {})}

    def wait_available(self, since: float) -> float:
        """Seconds from ``since`` until every app's Deployment has all replicas available."""
        total = len(self.apps) * self.args.clusters
        last = -1
        while time.time() - since < self.args.timeout:
            done = sum(_available(kubeconfig, self.args.replicas)
                       for kubeconfig in self.fleet.clusters.values())
            if done != last:
                print(f"  available: {done}/{total} Deployments", flush=True)
                last = done
            if done >= total:
                return round(time.time() - since, 2)
            time.sleep(1)
        raise SystemExit(f"only {last}/{total} Deployments available after "
                         f"{self.args.timeout:.0f}s (logs in {self.root})")

    def kubectl_loop(self, repo: Path) -> float:
        state = self.root / "kubectl-fleet"
        fresh = devfleet.up(["kubectl-loop"], state, progress=lambda _: None,
                            workloads=self.args.replicas > 0)
        kubeconfig = fresh.clusters["kubectl-loop"]
        create_namespace(kubeconfig)
        started = time.time()
        for name in self.apps:
            subprocess.run([kubectl(), "--kubeconfig", kubeconfig, "apply", "--server-side",
                            "--field-manager", "loop", "-f", str(repo / "apps" / name)],
                           check=True, capture_output=True)
        took = time.time() - started
        devfleet.down(state, progress=lambda _: None)
        return took


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def _available(kubeconfig: str, replicas: int) -> int:
    """How many Deployments in the bench namespace have ``replicas`` available."""
    out = subprocess.run([kubectl(), "--kubeconfig", kubeconfig, "get", "deploy", "-n", NAMESPACE,
                          "-o", "json"], capture_output=True, text=True).stdout
    items = json.loads(out or "{}").get("items", [])
    return sum((d.get("status") or {}).get("availableReplicas") == replicas for d in items)


def _svc_port(kubeconfig: str, name: str) -> str:
    return subprocess.run([kubectl(), "--kubeconfig", kubeconfig, "get", "svc", name, "-n",
                           NAMESPACE, "-o", "jsonpath={.spec.ports[0].port}"],
                          capture_output=True, text=True).stdout


def _ts(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _keep:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        return str(self.path)

    def __exit__(self, *_: object) -> None:
        return None


def _interrupt(*_: object) -> None:
    """SIGTERM stops everything as Ctrl-C does."""
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1)
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="pool size of each worker")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--replicas", type=int, default=0,
                        help="replicas per app's Deployment (default 0, Flux's app); above 0 the "
                             "clusters run controllers, scheduler and kwok Nodes")
    parser.add_argument("--skip-kubectl", action="store_true",
                        help="skip the kubectl loop (quick comparisons of fleetsync alone)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--work-dir", type=Path, help="keep logs and repos here (default: a temp dir)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="fleetsync-bench-") if not args.work_dir
          else _keep(args.work_dir)) as tmp:
        bench = Bench(args, Path(tmp))
        try:
            result = bench.run()
        finally:
            for proc in bench.procs:
                _stop(proc)
            for state in ("fleet", "kubectl-fleet"):
                devfleet.down(Path(tmp) / state, progress=lambda _: None)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
