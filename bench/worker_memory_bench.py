"""Worker memory benchmark: what one ``fleetsync worker -c 4`` really costs, and where it goes.

    .venv/bin/python bench/worker_memory_bench.py --apps 200 --json out.json
    .venv/bin/python bench/worker_memory_bench.py --apps 0      # idle only: Redis, no cluster

A worker is a process tree: the ``fleetsync worker`` supervisor, the Celery main
process and its prefork pool (``-c`` processes). Summing RSS over the tree (what
``bench/fleet_bench.py`` reports as ``worker_rss_mb``) counts every page the pool
shares copy-on-write with the main process once per process, so it overstates the
cost by up to the pool size. The honest figure is the sum of PSS (each shared page
divided among the processes that map it): that is what the tree adds to the
machine's memory. USS (pages private to one process) is what stopping that
process would give back. All three come from ``/proc/<pid>/smaps_rollup``.

The tree is measured idle (after the worker answers a ping) and, with ``--apps N``,
after a cold sync and a no-op pass of N applications on one real kube-apiserver
(the Flux benchmark's app, as in ``fleet_bench.py``). The import cost section
reports the RSS of a bare interpreter after importing each heavy module on its
own, and the slowest imports of ``workers.tasks`` from ``python -X importtime``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procstat import stop  # noqa: E402
from bench.scratch import scratch_redis  # noqa: E402
from devtools import fleet as devfleet  # noqa: E402

HEAVY_MODULES = ("kubernetes", "pydantic", "requests_oauthlib", "celery.worker", "kombu", "redis",
                 "yaml", "cryptography.hazmat.primitives.ciphers.aead", "structlog", "rich",
                 "prometheus_client", "fakeredis", "shared.spec.model", "scheduler.cli",
                 "workers.app", "workers.tasks")
NAMESPACE = "bench"
ROLLUP_FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty")


# --- /proc ----------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def tree(pid: int) -> Iterator[tuple[int, int]]:
    """(pid, depth) of ``pid`` and its descendants, parents first."""
    stack = [(pid, 0)]
    while stack:
        p, depth = stack.pop()
        yield p, depth
        stack += [(c, depth + 1) for c in reversed(children(p))]


def rollup_kb(pid: int) -> dict[str, int]:
    """Rss, Pss and Uss (private clean + dirty) of one process in kB, from smaps_rollup."""
    values = dict.fromkeys(ROLLUP_FIELDS, 0)
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0])
    except OSError:
        pass
    return {"rss": values["Rss"], "pss": values["Pss"],
            "uss": values["Private_Clean"] + values["Private_Dirty"],
            "shared": values["Shared_Clean"] + values["Shared_Dirty"]}


def role(pid: int, depth: int) -> str:
    return {0: "supervisor", 1: "celery main"}.get(depth, "pool")


def snapshot(root_pid: int) -> dict[str, Any]:
    procs: list[dict[str, Any]] = [{"pid": p, "role": role(p, d), **rollup_kb(p)}
                                   for p, d in tree(root_pid)]
    sums = {k: sum(p[k] for p in procs) for k in ("rss", "pss", "uss")}
    celery_only = {k: sum(p[k] for p in procs if p["role"] != "supervisor")
                   for k in ("rss", "pss", "uss")}
    return {"processes": procs, "sum_kb": sums, "without_supervisor_kb": celery_only}


def print_snapshot(title: str, snap: dict[str, Any]) -> None:
    print(f"\n{title}")
    print(f"  {'pid':>7}  {'role':<12} {'RSS MB':>8} {'PSS MB':>8} {'USS MB':>8} {'shared MB':>9}")
    for p in snap["processes"]:
        print(f"  {p['pid']:>7}  {p['role']:<12} {mb(p['rss']):>8} {mb(p['pss']):>8} "
              f"{mb(p['uss']):>8} {mb(p['shared']):>9}")
    for label, key in (("sum", "sum_kb"), ("sum w/o supervisor", "without_supervisor_kb")):
        s = snap[key]
        print(f"  {label:<21} {mb(s['rss']):>8} {mb(s['pss']):>8} {mb(s['uss']):>8}")


def mb(kb: int) -> float:
    return round(kb / 1024, 1)


# --- what the worker syncs ------------------------------------------------------------

def app_objects(name: str) -> list[dict]:
    """The Flux benchmark's app: a Deployment scaled to zero, a ServiceAccount, a Service
    and an Ingress."""
    labels, meta = {"app": name}, {"name": name, "namespace": NAMESPACE}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
         "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"serviceAccountName": name,
                                        "containers": [{"name": "app", "image": "nginx:1.25"}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta,
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 80}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
         "spec": {"rules": [{"host": f"{name}.example.com", "http": {"paths": [{
             "path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}},
    ]


def make_source(root: Path, apps: list[str]) -> Path:
    """A bare Git repository with one directory per application; returns its path."""
    repo, bare = root / "repo", root / "repo.git"
    for name in apps:
        path = repo / "apps" / name / "app.yaml"
        path.parent.mkdir(parents=True)
        path.write_text("\n---\n".join(json.dumps(o) for o in app_objects(name)) + "\n")
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=bench", "-c", "user.email=bench@example.com",
                  "commit", "-q", "-m", "apps"]):
        subprocess.run(["git", *argv], cwd=repo, check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    return bare


def write_spec(path: Path, bare: Path, cluster: str, kubeconfig: str, apps: list[str]) -> None:
    lines = ["sources:", "  - name: bench", f"    url: file://{bare}", "    branch: main",
             "    interval: 10m", "clusters:", f"  - name: {cluster}",
             f"    kubeconfig: {kubeconfig}", "    interval: 10m", "applications:"]
    for name in apps:
        lines += [f"  - name: {name}", "    source: bench", f"    path: apps/{name}",
                  f"    clusters: {{names: [{cluster}]}}"]
    path.write_text("\n".join(lines) + "\n")


def create_namespace(kubeconfig: str) -> None:
    kubectl = str(Path(sys.executable).with_name("kubectl"))
    subprocess.run([kubectl, "--kubeconfig", kubeconfig, "create", "namespace", NAMESPACE],
                   check=True, capture_output=True)


# --- the worker --------------------------------------------------------------------------

def worker_env(redis_url: str, root: Path) -> dict[str, str]:
    return {**os.environ, "FLEETSYNC_REDIS_URL": redis_url,
            "FLEETSYNC_FLEET": str(root / "fleet.yaml"),
            "FLEETSYNC_CACHE_DIR": str(root / "cache"), "FLEETSYNC_LOG_LEVEL": "WARNING",
            "FLEETSYNC_ALLOW_LOCAL_SOURCES": "true", "PYTHONPATH": str(ROOT)}


def start_worker(redis_url: str, root: Path, concurrency: int) -> subprocess.Popen:
    log = open(root / "worker.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "scheduler.cli", "worker", "-n",
                             "membench@%h", "-c", str(concurrency), "-l", "WARNING"],
                            cwd=ROOT, env=worker_env(redis_url, root), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(celery: Any, proc: subprocess.Popen, concurrency: int, timeout: float) -> None:
    """Until the worker answers a ping and its pool has ``concurrency`` processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited with {proc.returncode}")
        pool = [p for p, d in tree(proc.pid) if d == 2]
        if len(pool) >= concurrency and celery.control.ping(timeout=0.5):
            return
    raise SystemExit(f"the worker was not ready within {timeout:.0f}s")




def sync_pass(celery: Any, redis_url: str, cluster: str, units: int, timeout: float) -> float:
    """Send one reconcile of ``cluster``; seconds until ``units`` units are Ready since."""
    from shared.state.redisconn import connect
    from shared.state.status import StatusStore

    store = StatusStore(connect(redis_url))
    since = time.time()
    celery.send_task("fleetsync.reconcile_cluster", args=[cluster], kwargs={"trigger": "api"})
    while time.time() - since < timeout:
        done = sum(1 for s in store.all_statuses()
                   if s.phase == "Ready" and s.last_synced_at and _ts(s.last_synced_at) >= since)
        if done >= units:
            return time.time() - since
        time.sleep(0.5)
    raise SystemExit(f"only {done}/{units} units Ready after {timeout:.0f}s")


def _ts(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# --- imports ----------------------------------------------------------------------------

def import_costs() -> list[dict[str, Any]]:
    """RSS and module count of a fresh interpreter after importing each module alone."""
    probe = ("import sys, importlib\n"
             "m = sys.argv[1]\n"
             "if m: importlib.import_module(m)\n"
             "rss = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')]\n"
             "print(rss[0], len(sys.modules))\n")
    rows: list[dict[str, Any]] = []
    for module in ("", *HEAVY_MODULES):
        out = subprocess.run([sys.executable, "-c", probe, module], cwd=ROOT, capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if out.returncode:
            rows.append({"module": module, "error": out.stderr.strip().splitlines()[-1]})
            continue
        rss, count = map(int, out.stdout.split())
        rows.append({"module": module or "(bare interpreter)", "rss_kb": rss, "modules": count})
    return rows


def importtime_by_package(module: str, top: int) -> dict[str, Any]:
    """``python -X importtime -c "import module"``: the total, and the ``top`` packages by
    the time their own modules took (self time, summed over each top-level package)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    packages: dict[str, int] = {}
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|")
        root = name.strip().split(".")[0]
        packages[root] = packages.get(root, 0) + int(own)
    ranked = sorted(packages.items(), key=lambda kv: -kv[1])[:top]
    return {"total_ms": round(sum(packages.values()) / 1000),
            "top_ms": {k: round(v / 1000) for k, v in ranked}}


# --- main ---------------------------------------------------------------------------------

def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from shared.celery_app import make_app
    from shared.settings import Settings

    result: dict[str, Any] = {"concurrency": args.concurrency, "apps": args.apps}
    with ExitStack() as stack:
        if args.apps:
            print("Starting Redis and one cluster", flush=True)
            fleet = devfleet.up(["mem-1"], root / "fleet", progress=lambda _: None,
                                workloads=False)
            stack.callback(devfleet.down, root / "fleet", lambda _: None)
            redis_url = fleet.redis_url
            create_namespace(fleet.clusters["mem-1"])
            apps = [f"app-{i:04d}" for i in range(args.apps)]
            write_spec(root / "fleet.yaml", make_source(root, apps), "mem-1",
                       fleet.clusters["mem-1"], apps)
        else:
            redis_url = stack.enter_context(scratch_redis())
            (root / "fleet.yaml").write_text("sources: []\nclusters: []\napplications: []\n")
        celery = make_app(Settings(redis_url=redis_url))
        stack.callback(celery.close)
        worker = start_worker(redis_url, root, args.concurrency)
        stack.callback(stop, worker)
        wait_ready(celery, worker, args.concurrency, args.timeout)
        result["idle"] = snapshot(worker.pid)
        print_snapshot("Idle, after the worker answered a ping", result["idle"])
        if args.apps:
            result["cold_sync_s"] = round(sync_pass(celery, redis_url, "mem-1", args.apps,
                                                    args.timeout), 2)
            result["after_cold_sync"] = snapshot(worker.pid)
            print_snapshot(f"After a cold sync of {args.apps} apps ({result['cold_sync_s']} s)",
                           result["after_cold_sync"])
            result["noop_pass_s"] = round(sync_pass(celery, redis_url, "mem-1", args.apps,
                                                    args.timeout), 2)
            result["after_noop_pass"] = snapshot(worker.pid)
            print_snapshot(f"After a no-op pass ({result['noop_pass_s']} s)",
                           result["after_noop_pass"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=200,
                        help="applications synced on one cluster (0: idle only, no cluster)")
    parser.add_argument("--concurrency", type=int, default=4, help="pool size of the worker")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--skip-imports", action="store_true", help="skip the import cost section")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with tempfile.TemporaryDirectory(prefix="fleetsync-membench-") as tmp:
        result = measure(args, Path(tmp))
    if not args.skip_imports:
        result["imports"] = import_costs()
        print("\nRSS of a fresh interpreter after importing one module")
        width = max(len(row["module"]) for row in result["imports"])
        for row in result["imports"]:
            if "error" in row:
                print(f"  {row['module']:<{width}} {row['error']}")
            else:
                print(f"  {row['module']:<{width}} {mb(row['rss_kb']):>7} MB  "
                      f"{row['modules']:>5} modules")
        result["importtime_workers_tasks"] = importtime_by_package("workers.tasks", 15)
        it = result["importtime_workers_tasks"]
        print(f"\npython -X importtime -c 'import workers.tasks': {it['total_ms']} ms; "
              "by package (self time):")
        for name, ms in it["top_ms"].items():
            print(f"  {name:<28} {ms:>6} ms")
    final = result.get("after_noop_pass") or result["idle"]
    print(f"\nper worker (PSS sum, the tree's real cost): {mb(final['sum_kb']['pss'])} MB; "
          f"RSS sum (counts shared pages once per process): {mb(final['sum_kb']['rss'])} MB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
