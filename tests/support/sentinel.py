"""A real Redis Sentinel set on loopback: a primary, a replica and sentinels.

All are ``redis-server`` processes (``--sentinel`` runs the same binary as a
sentinel), each on a free port in a directory of its own. Every start waits for
a condition (a ping, the replica's link, the sentinels knowing the replica);
``fail_primary`` SIGKILLs the primary and waits until every sentinel names the
replica as the new primary.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import redis

from tests.conftest import need
from tests.support.stack import free_port

MASTER = "fleet"


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout}s")
        time.sleep(0.05)


class SentinelSet:
    """``primary`` and ``replica`` ports, ``sentinel_ports``, and ``url`` for fleetsync."""

    def __init__(self, base: Path, sentinels: int = 2) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            need("redis-server", "install it with apt-get install redis-server")
        self.binary: str = binary or ""
        self.base = base
        self.primary, self.replica = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.procs: dict[int, subprocess.Popen] = {}
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        self.url = f"sentinel://{hosts}/0?master={MASTER}"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1,
                           decode_responses=True)

    def _spawn(self, port: int, *args: str) -> None:
        workdir = self.base / f"redis-{port}"
        workdir.mkdir(parents=True, exist_ok=True)
        log = open(workdir / "log", "ab")
        self.procs[port] = subprocess.Popen([self.binary, *args], cwd=workdir, stdout=log,
                                            stderr=subprocess.STDOUT)
        log.close()

    def _server(self, port: int, *extra: str) -> None:
        self._spawn(port, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(self.base / f"redis-{port}"), *extra)

    def start(self) -> "SentinelSet":
        self._server(self.primary)
        _wait("the primary answering", lambda: self.client(self.primary).ping(), 20)
        self._server(self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        _wait("the replica in sync", lambda: self.client(self.replica).info("replication")
              .get("master_link_status") == "up", 30)
        for port in self.sentinel_ports:
            conf = self.base / f"sentinel-{port}.conf"      # a sentinel rewrites its file
            conf.write_text("\n".join([
                f"port {port}", "bind 127.0.0.1", f"dir {self.base}",
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary} 1",
                f"sentinel down-after-milliseconds {MASTER} 1000",
                f"sentinel failover-timeout {MASTER} 4000",
                f"sentinel parallel-syncs {MASTER} 1", ""]))
            self._spawn(port, str(conf), "--sentinel")
        for port in self.sentinel_ports:
            _wait(f"sentinel {port} knowing the replica", lambda p=port: any(
                str(r.get("port")) == str(self.replica)
                for r in self.client(p).sentinel_slaves(MASTER)), 30)
        return self

    def primary_port(self, sentinel: int) -> int:
        host_port = self.client(sentinel).sentinel_get_master_addr_by_name(MASTER)
        return int(host_port[1]) if host_port else 0

    def fail_primary(self, timeout: float = 30) -> float:
        """SIGKILL the primary; the seconds until every sentinel names the replica."""
        started = time.monotonic()
        proc = self.procs.pop(self.primary)
        proc.kill()
        proc.wait(10)
        for port in self.sentinel_ports:
            _wait(f"sentinel {port} promoting the replica",
                  lambda p=port: self.primary_port(p) == self.replica, timeout)
        _wait("the replica taking writes", lambda: self.client(self.replica)
              .info("replication").get("role") == "master", timeout)
        return time.monotonic() - started

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
