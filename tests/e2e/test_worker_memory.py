"""A worker's memory: the supervisor stays small, the prefork pool shares what it inherits.

The pool test starts a real ``fleetsync worker`` on the real Redis and reads each
process's memory from ``/proc/<pid>/smaps_rollup``: USS is what a process holds
alone. A pool process forked from the main process shares its code copy-on-write;
before ``workers.prefork``, the garbage collector's visits gave each pool process a
private copy of about half of it (``bench/worker_memory_bench.py`` measures the whole).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, worker_env

POOL = 3


def test_worker_supervisor_builds_only_its_own_command():
    code = ("import sys, scheduler.cli\n"
            "args, extra = scheduler.cli.build_parser('worker').parse_known_args("
            "['worker', '-c', '4', '--no-restart'])\n"
            "assert args.func.__name__ == 'run_worker' and args.no_restart, args\n"
            "assert extra == ['-c', '4'], extra\n"
            "print(sorted(m for m in sys.modules if m.startswith(('scheduler.commands.', "
            "'devtools', 'workers', 'kubernetes', 'redis', 'structlog'))))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['scheduler.commands.runners']"


def test_other_commands_still_see_the_whole_command_line():
    import scheduler.cli

    parser = scheduler.cli.build_parser("status")
    assert parser.parse_args(["validate"]).command == "validate"
    assert parser.parse_args(["worker"]).command == "worker"


def test_every_module_the_worker_preloads_exists():
    from workers import prefork

    prefork.preload()
    assert all(name in sys.modules for name in prefork.PRELOAD)


def _uss_and_rss_kb(pid: int) -> tuple[int, int]:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Private_Clean", "Private_Dirty"):
            fields[key] = int(rest.split()[0])
    return fields["Private_Clean"] + fields["Private_Dirty"], fields["Rss"]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _settled(pool: list[int]) -> dict[int, tuple[int, int]] | None:
    """(USS, RSS) of every pool process, once two reads half a second apart agree."""
    first = {pid: _uss_and_rss_kb(pid) for pid in pool}
    time.sleep(0.5)
    second = {pid: _uss_and_rss_kb(pid) for pid in pool}
    stable = all(abs(second[p][0] - first[p][0]) <= first[p][0] // 50 for p in pool)
    return second if stable else None


def test_pool_processes_share_what_the_main_process_loaded(isolated_redis_url, tmp_path):
    if not Path("/proc/self/smaps_rollup").exists():
        pytest.skip("no /proc/<pid>/smaps_rollup on this system")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("sources: []\nclusters: []\napplications: []\n")
    env = worker_env(isolated_redis_url, FLEETSYNC_FLEET=str(fleet),
                     FLEETSYNC_CACHE_DIR=str(tmp_path / "cache"), FLEETSYNC_LOG_LEVEL="WARNING")
    log = open(tmp_path / "worker.log", "ab")
    # --no-restart: the Celery main process is this very process, its pool its children
    worker = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "worker", "--no-restart",
                               "-n", "memory@%h", "-c", str(POOL), "-l", "WARNING"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    log.close()
    try:
        deadline = time.monotonic() + 90
        sizes = None
        while sizes is None:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            pool = _children(worker.pid)
            sizes = _settled(pool) if len(pool) == POOL else None
            if sizes is None:
                time.sleep(0.2)
        # before: the processes forked first held about half their pages alone
        for pid, (uss, rss) in sizes.items():
            assert uss < 0.3 * rss, f"pool process {pid}: {uss} kB private of {rss} kB"
    finally:
        try:
            os.killpg(worker.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        worker.wait(30)
