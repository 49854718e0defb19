"""Flower's persisted state: its size, save and load time for N fleetsync tasks.

``fleetsync flower`` runs Flower in persistent mode. Flower pickles its whole
event state into one shelve file, on its I/O loop (the page does not answer
meanwhile), every ``--state_save_interval`` and when it stops; it loads it when
it starts. This measures that cost for tasks shaped like fleetsync's (readable
``argsrepr``, a run's result dict), to choose ``--max_tasks``:

    .venv/bin/python bench/flower_state_bench.py --tasks 10000 100000
"""

from __future__ import annotations

import argparse
import dbm
import json
import os
import shelve
import tempfile
import time
import uuid

from flower.events import EventsState

from shared.tasks_api import APPLY, describe, describe_kwargs, unit_result


def fill(n: int) -> EventsState:
    """A Flower state holding ``n`` finished apply tasks over 100 apps and 50 clusters."""
    state = EventsState(max_tasks_in_memory=n)
    now = time.time()
    for i in range(n):
        task, host, at = str(uuid.uuid4()), "worker-1@host", now + i
        app, cluster = f"app{i % 100}", f"cluster-{i % 50}"
        kwargs = {"run_id": uuid.uuid4().hex, "trigger": "beat", "revision": "81a51c7d" * 5}
        result = unit_result(app, cluster, "Ready", "7 unchanged", run_id=kwargs["run_id"],
                             revision=kwargs["revision"],
                             details={"counts": {"unchanged": 7}, "requests": 9, "writes": 0})
        common = {"uuid": task, "hostname": host, "timestamp": at, "local_received": at}
        state.event({**common, "type": "task-received", "clock": 3 * i, "name": APPLY,
                     "args": describe(APPLY, [app, cluster, "key"], kwargs),
                     "kwargs": describe_kwargs(kwargs), "retries": 0, "root_id": task})
        state.event({**common, "type": "task-started", "clock": 3 * i + 1})
        state.event({**common, "type": "task-succeeded", "clock": 3 * i + 2,
                     "result": repr(result), "runtime": 0.05})
    return state


def measure(n: int) -> dict:
    state = fill(n)
    with tempfile.TemporaryDirectory() as where:
        db = os.path.join(where, "flower.db")
        started = time.monotonic()
        with shelve.open(db, flag="n") as shelf:
            shelf["events"] = state
        saved = time.monotonic() - started
        size = sum(os.path.getsize(os.path.join(where, f)) for f in os.listdir(where))
        started = time.monotonic()
        with shelve.open(db) as shelf:
            back = shelf["events"]
        loaded = time.monotonic() - started
        return {"tasks": n, "backend": dbm.whichdb(db), "state_mb": round(size / 1e6, 1),
                "save_s": round(saved, 2), "load_s": round(loaded, 2),
                "tasks_loaded": len(back.tasks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[10_000, 100_000])
    for n in parser.parse_args().tasks:
        print(json.dumps(measure(n)))


if __name__ == "__main__":
    main()
