"""Memory and CPU of the benchmark's processes, read from /proc.

A worker is a process tree (the supervisor, Celery's main process and its pool),
so memory is summed over the tree: RSS counts pages shared between the pool's
forked children once per process, PSS (``/proc/PID/smaps_rollup``) divides each
shared page among its sharers, so the PSS sum is what the tree really costs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out += tree(int(child))
    return out


def rss_pss_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; (0, 0) when it is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (all its threads), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS      # utime, stime


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class MemorySampler(threading.Thread):
    """Peak RSS and PSS of each worker's process tree (the largest worker's), sampled
    every ``every`` seconds; ``last_*`` keep the latest sample."""

    def __init__(self, pids: list[int], every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pids, self.every, self.stop = pids, every, threading.Event()
        self.peak_rss_kb = self.peak_pss_kb = self.last_rss_kb = self.last_pss_kb = 0

    def sample(self) -> None:
        sizes = []
        for pid in self.pids:
            pairs = [rss_pss_kb(p) for p in tree(pid)]
            sizes.append((sum(r for r, _ in pairs), sum(p for _, p in pairs)))
        self.last_rss_kb = max(r for r, _ in sizes)
        self.last_pss_kb = max(p for _, p in sizes)
        self.peak_rss_kb = max(self.peak_rss_kb, self.last_rss_kb)
        self.peak_pss_kb = max(self.peak_pss_kb, self.last_pss_kb)

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.sample()


def cpu_split(fleet_processes: list, groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far, by part: the local fleet's processes by kind (apiserver,
    etcd, redis, ...) and each named group of process trees (workers, beat)."""
    out: dict[str, float] = {}
    for proc in fleet_processes:
        kind = proc.name.rsplit("-", 1)[-1]
        out[kind] = out.get(kind, 0.0) + cpu_seconds(proc.pid)
    for name, roots in groups.items():
        out[name] = sum(cpu_seconds(pid) for root in roots for pid in tree(root))
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after.get(k, 0.0) - before.get(k, 0.0), 1) for k in after}


def stop(proc: "subprocess.Popen", wait: float = 30) -> None:
    """SIGTERM the process group a benchmark started, then SIGKILL if it lingers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(wait)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
