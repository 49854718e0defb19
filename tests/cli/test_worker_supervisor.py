"""``fleetsync worker``'s supervisor, through the CLI on the real Redis: a Celery worker shut
down by a remote-control broadcast (what ``celery control shutdown`` and Flower's shutdown
button send) is started again; a signal to ``fleetsync worker`` itself stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from shared.celery_app import make_app
from shared.settings import Settings
from tests.conftest import ROOT, worker_env

TIMEOUT = 90.0


def wait(what: str, check: Callable[[], Any], log: Path) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {TIMEOUT}s; log: {log.read_text()[-3000:]}")
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_remote_shutdown_is_restarted_and_a_signal_to_fleetsync_worker_stops_it(
        isolated_redis_url: str, tmp_path: Path) -> None:
    app = make_app(Settings(redis_url=isolated_redis_url))  # the test's own Redis database
    name = f"sup-{uuid.uuid4().hex[:6]}@{os.uname().nodename}"
    log = tmp_path / "worker.log"
    with open(log, "ab") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "scheduler.cli", "worker", "-n", name, "-c", "1",
             "-l", "WARNING"], cwd=ROOT, env=worker_env(isolated_redis_url),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def worker_pid() -> int | None:
        stats = app.control.inspect([name], timeout=1.0).stats() or {}
        return stats.get(name, {}).get("pid")

    def restarted(first: int) -> int | None:
        assert supervisor.poll() is None, \
            f"fleetsync worker stopped with its Celery worker: {log.read_text()[-2000:]}"
        pid = worker_pid()
        return pid if pid not in (None, first) else None

    try:
        first = wait("the worker answers", worker_pid, log)
        app.control.shutdown(destination=[name])            # a remote-control broadcast
        wait("the first Celery worker exits", lambda: not alive(first), log)
        second = wait("a new Celery worker answers", lambda: restarted(first), log)
        assert "remote shutdown" in log.read_text()

        os.kill(supervisor.pid, signal.SIGTERM)              # the operator stops fleetsync worker
        assert supervisor.wait(TIMEOUT) == 0
        wait("the second Celery worker exits", lambda: not alive(second), log)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait(30)
