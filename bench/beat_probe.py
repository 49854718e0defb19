"""Beat as ``fleetsync beat`` runs it, with the CPU time of each tick counted.

The fleet benchmark starts beat through this file (``python bench/beat_probe.py
STATS.json [celery beat options]``) to report beat's CPU per tick with a
thousand cluster entries. ``ProbedScheduler`` is fleetsync's scheduler with
``tick`` timed by the beat thread's own CPU clock: every tick, and apart those
that sent a task (a tick sends at most one due entry, so a round of 1,000
clusters is 1,000 such ticks). The figures go to STATS.json at most once a
second and when beat stops; the process's whole CPU time (all threads) is read
from /proc by the benchmark.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from scheduler.beat import FleetScheduler

STATS_ENV = "FLEETSYNC_BENCH_BEAT_STATS"


class ProbedScheduler(FleetScheduler):
    """FleetScheduler whose ticks are counted and timed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._stats: dict[str, Any] = {"ticks": 0, "tick_cpu_s": 0.0, "send_ticks": 0, "send_cpu_s": 0.0,
                       "first_send": None, "last_send": None}
        self._written = 0.0
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        started = time.thread_time()
        delay = super().tick(*args, **kwargs)
        spent = time.thread_time() - started
        stats = self._stats
        stats["ticks"] += 1
        stats["tick_cpu_s"] += spent
        if delay == 0:
            stats["send_ticks"] += 1
            stats["send_cpu_s"] += spent
            stats["first_send"] = stats["first_send"] or time.time()
            stats["last_send"] = time.time()
        if time.monotonic() - self._written > 1.0:
            self._write()
        return delay

    def close(self) -> None:
        self._write()
        super().close()

    def _write(self) -> None:
        self._written = time.monotonic()
        path = Path(os.environ[STATS_ENV])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._stats))
        tmp.replace(path)


def main() -> None:
    os.environ[STATS_ENV] = sys.argv[1]
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", "-A", "scheduler.app", "--quiet", "beat",
                "-S", "beat_probe:ProbedScheduler", *sys.argv[2:]]
    celery_main()


if __name__ == "__main__":
    main()
