"""Redis restarts (its data kept, not flushed) while syncs are in flight: the work in
flight is retried, no marker or lock stays stuck, and the fleet converges."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis

from tests.conftest import need
from tests.support.stack import Stack, free_port

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


class RedisServer:
    """A redis-server of its own, persisting every write, that can be restarted."""

    def __init__(self, data_dir) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            need("redis-server", "install it with apt-get install redis-server")
        self.port, self.dir = free_port(), data_dir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping():
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def _protocol_keys(client: redis.Redis) -> list[str]:
    return [k for pattern in ("queued", "pending", "running", "lock")
            for k in client.scan_iter(f"fleetsync:{pattern}:*")]


def test_a_redis_restart_mid_sync_loses_nothing_and_leaves_nothing_stuck(
        dev_fleet, tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    stack = Stack(tmp_path, server.url, dev_fleet.clusters, interval=3)
    try:
        stack.write_spec(["dev-1", "dev-2"])
        stack.start_worker("w1")
        stack.start_worker("w2")
        beat = stack.start_beat()
        first = stack.repo.head()
        for cluster in ("dev-1", "dev-2"):
            stack.wait(f"{cluster} Ready", lambda c=cluster: stack.ready_at(c, first), timeout=90)

        client = redis.Redis.from_url(server.url, decode_responses=True)
        second = stack.commit("value two", value="two", extra=True)
        deadline = time.monotonic() + 30
        while not _protocol_keys(client):          # a run of the new commit is in flight
            assert time.monotonic() < deadline, "no sync started after the commit"
            time.sleep(0.01)
        server.stop()
        server.start()

        # A worker that dies with the restart (kombu's connection-loss crash; the supervisor
        # starts it again) takes its unacknowledged tasks with it until the broker's
        # visibility timeout: their runs are presumed lost after the queued timeout (60 s
        # here), and the next tick queues new ones.
        for cluster in ("dev-1", "dev-2"):
            stack.wait(f"{cluster} at the new commit after the restart",
                       lambda c=cluster: stack.ready_at(c, second), timeout=180)
        stack.kill(beat)
        stack.wait("every marker and lock released", lambda: not _protocol_keys(client),
                   timeout=90)
    finally:
        stack.stop()
        server.stop()
