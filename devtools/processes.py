"""Processes of the local fleet: start one in a session of its own, tell whether it is
still there, stop a list of them (the whole group, SIGTERM then SIGKILL), a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Proc:
    name: str
    pid: int
    log: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def spawn(log: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
    """Start ``argv`` in a session of its own (``down`` stops its whole group), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    return Proc(name, popen.pid, str(log))


def stop_processes(procs: list[Proc], grace: float = 10.0) -> None:
    """Stop in waves, each all at once: what uses a store (apiservers and their
    controllers, workers), then every etcd, Redis last. SIGTERM each process group,
    SIGKILL what is still there ``grace`` after its wave began."""
    for wave in sorted({_wave(p) for p in procs}):
        group = [p for p in reversed(procs) if _wave(p) == wave]
        for proc in group:
            _signal(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in group:
            _wait_gone(proc.pid, max(0.0, deadline - time.monotonic()))
        late = [proc for proc in group if pid_alive(proc.pid)]
        for proc in late:
            _signal(proc.pid, signal.SIGKILL)
        for proc in late:
            _wait_gone(proc.pid, 5)


def _wave(proc: Proc) -> int:
    """0: stopped first; 1: an etcd (its apiserver is gone by then); 2: Redis."""
    return 2 if proc.name == "redis" else 1 if proc.name.endswith("-etcd") else 0


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.02)


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
