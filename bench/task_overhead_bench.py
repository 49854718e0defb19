"""What a Celery task costs on this machine before it does anything: the floor of a stage.

    .venv/bin/python bench/task_overhead_bench.py --tasks 2000 --json out.json

A sync unit's cold sync is two Celery tasks (render, then apply) besides its share of
the cluster's reconcile. This sends ``--tasks`` empty tasks (``fleetsync.ping``, its
result not stored, as the stages' are not) to one real ``fleetsync worker -c 4`` on a
real Redis, with the configuration the fleet runs with (no task-sent events, worker
events for Flower, late acks), and reports the CPU seconds per task of each part:
the sender, the worker's process tree, and Redis. Sending is done by one process, as
a stage sends its next one.

Set beside ``bench/fleet_bench.py``'s figures, it says how much of a cold sync is the
task system itself: ``2 x cpu_ms_per_task`` per unit, whatever the stages do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procstat import cpu_seconds, load_average, stop, tree  # noqa: E402
from bench.scratch import scratch_redis  # noqa: E402
from bench.worker_memory_bench import start_worker, wait_ready  # noqa: E402


def redis_pid(redis_url: str) -> int:
    from shared.state.redisconn import connect
    return int(connect(redis_url).info("server")["process_id"])


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in tree(pid))


def measure(tasks: int, concurrency: int, timeout: float, root: Path) -> dict:
    from shared import tasks_api
    from shared.celery_app import make_app, send
    from shared.settings import Settings

    with ExitStack() as stack:
        redis_url = stack.enter_context(scratch_redis())
        (root / "fleet.yaml").write_text("sources: []\nclusters: []\napplications: []\n")
        celery = make_app(Settings(redis_url=redis_url))
        stack.callback(celery.close)
        worker = start_worker(redis_url, root, concurrency)
        stack.callback(stop, worker)
        wait_ready(celery, worker, concurrency, timeout)
        from shared.state.redisconn import connect
        client = connect(redis_url)
        server = redis_pid(redis_url)
        before = {"sender": cpu_seconds(os.getpid()), "worker": tree_cpu(worker.pid),
                  "redis": cpu_seconds(server)}
        started = time.monotonic()
        for i in range(tasks):
            send(celery, tasks_api.PING, [{"n": i}], ignore_result=True)
        sent = time.monotonic() - started
        while time.monotonic() - started < timeout:      # every task taken and acknowledged
            if not client.llen("reconcile") and not client.hlen("unacked"):
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"tasks still queued after {timeout:.0f}s")
        elapsed = time.monotonic() - started
        after = {"sender": cpu_seconds(os.getpid()), "worker": tree_cpu(worker.pid),
                 "redis": cpu_seconds(server)}
    cpu = {k: round(after[k] - before[k], 2) for k in before}
    total = sum(cpu.values())
    return {"tasks": tasks, "concurrency": concurrency, "seconds": round(elapsed, 2),
            "send_seconds": round(sent, 2), "cpu_s": cpu,
            "cpu_ms_per_task": round(total / tasks * 1000, 2),
            "cpu_ms_per_task_by_part": {k: round(v / tasks * 1000, 2) for k, v in cpu.items()},
            "tasks_per_s": round(tasks / elapsed, 1), "load_average": load_average()}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetsync-taskbench-") as tmp:
        result = measure(args.tasks, args.concurrency, args.timeout, Path(tmp))
    for key, value in result.items():
        print(f"{key:26} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
