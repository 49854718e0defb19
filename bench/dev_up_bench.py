"""How long `fleetsync dev up` takes to bring N clusters to ready (binaries cached), and what
one cluster costs at rest.

    .venv/bin/python bench/dev_up_bench.py --clusters 3 --runs 3 [--no-workloads] [--idle 30] [--json OUT]

With workloads (the default) "ready" means every cluster's fake Nodes are Ready
(etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok running);
``--no-workloads`` measures bare control planes (etcd, kube-apiserver). After the
last run's ``up``, the processes of the first cluster are measured for ``--idle``
seconds with nothing to do: resident memory (sum of VmRSS) and CPU seconds
(utime + stime from /proc), per process and in total.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import fleet as devfleet  # noqa: E402
from devtools.binaries import ensure_binaries  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def idle_cost(state: devfleet.FleetState, cluster: str, seconds: float, settle: float) -> dict:
    """Memory and CPU of one cluster's processes over ``seconds`` with nothing to do."""
    procs = [p for p in state.processes if p.name.startswith(cluster + "-")]
    time.sleep(settle)           # let start-up work (informer lists, first syncs) finish
    before = {p.name: cpu_seconds(p.pid) for p in procs}
    time.sleep(seconds)
    per = {p.name.removeprefix(cluster + "-"): {
        "rss_mb": round(rss_mb(p.pid), 1),
        "cpu_s": round(cpu_seconds(p.pid) - before[p.name], 2)} for p in procs}
    cpu = sum(v["cpu_s"] for v in per.values())
    return {"cluster_rss_mb": round(sum(v["rss_mb"] for v in per.values()), 1),
            "cluster_idle_cpu_s": round(cpu, 2), "idle_window_s": seconds,
            "cluster_idle_cpu_percent": round(100 * cpu / seconds, 1), "per_process": per}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workloads", action=argparse.BooleanOptionalAction, default=True,
                        help="controllers, scheduler, kwok and 3 Nodes per cluster (default on)")
    parser.add_argument("--idle", type=float, default=30.0,
                        help="seconds of idle CPU measured on one cluster (0 skips it)")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds after up before the idle window starts")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ensure_binaries(workloads=args.workloads)
    up_s, down_s = [], []
    cost: dict = {}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            names = [f"bench-{i}" for i in range(1, args.clusters + 1)]
            started = time.monotonic()
            state = devfleet.up(names, Path(tmp), progress=lambda _: None,
                                workloads=args.workloads)
            up_s.append(time.monotonic() - started)
            if run == args.runs - 1 and args.idle > 0:
                print(f"measuring {names[0]} idle for {args.idle:g}s", flush=True)
                cost = idle_cost(state, names[0], args.idle, args.settle)
            started = time.monotonic()
            devfleet.down(Path(tmp), progress=lambda _: None)
            down_s.append(time.monotonic() - started)
        print(f"run {run + 1}: up {up_s[-1]:.2f}s  down {down_s[-1]:.2f}s", flush=True)
    result = {"clusters": args.clusters, "workloads": args.workloads, "runs": args.runs,
              "up_median_s": round(statistics.median(up_s), 2), "up_max_s": round(max(up_s), 2),
              "down_median_s": round(statistics.median(down_s), 2), **cost}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
