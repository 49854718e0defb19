"""The worker keeps a delivered message in kombu's ``unacked`` bookkeeping without a
transaction (``workers/broker.py``): each delivery and acknowledgement is its two
commands, no ``MULTI``/``EXEC`` around them, and a task still runs once and is
acknowledged (nothing is left in ``unacked``)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import redis

from tests.conftest import new_redis_db, start_worker, stop_worker
from workers import broker

TASKS = 20
END = "end of the tasks counted"


class Commands:
    """The commands Redis runs in one database, as ``MONITOR`` sees them, until ``END``."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.db = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.seen: Counter[str] = Counter()
        self._monitor = self.client.monitor().__enter__()
        self._monitor.next_command()            # MONITOR's own OK: it is listening
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for command in self._monitor.listen():
            if int(command.get("db", -1)) != self.db:
                continue
            words = command["command"].split()
            if words[0].upper() == "ECHO" and END in command["command"]:
                return
            self.seen[words[0].upper()] += 1

    def stop(self) -> Counter[str]:
        self.client.echo(END)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "MONITOR never saw the end of the tasks"
        return self.seen


def test_deliveries_and_acks_need_no_transaction(redis_url):
    from shared.celery_app import make_app
    from shared.settings import Settings

    url = new_redis_db(redis_url)
    app = make_app(Settings(redis_url=url))
    worker = start_worker(url, "pipelines")
    try:
        assert app.send_task("fleetsync.ping").get(timeout=60)["pong"]
        commands = Commands(url)
        results = [app.send_task("fleetsync.ping", args=[{"n": i}]) for i in range(TASKS)]
        for result in results:
            assert result.get(timeout=60)["pong"] is True
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30        # a late ack follows the result
        while client.hlen("unacked") or client.zcard("unacked_index"):
            assert time.monotonic() < deadline, "a task was never acknowledged"
            time.sleep(0.05)
        seen = commands.stop()
    finally:
        stop_worker(worker)
    # with kombu's transport: two transactions per task (its delivery and its ack), and
    # the result backend's own; now only the result backend's
    assert seen["MULTI"] <= TASKS + 2, seen
    assert seen["ZADD"] >= TASKS and seen["ZREM"] >= TASKS, seen


def test_the_worker_app_uses_these_transports_for_every_redis_url():
    from kombu import transport
    from kombu.transport import resolve_transport

    kept = dict(transport.TRANSPORT_ALIASES)
    try:
        broker.use()
        assert resolve_transport("redis") is broker.Transport
        assert resolve_transport("rediss") is broker.Transport
        assert resolve_transport("sentinel") is broker.SentinelTransport
    finally:
        transport.TRANSPORT_ALIASES.clear()
        transport.TRANSPORT_ALIASES.update(kept)
    assert broker.Transport.Channel.QoS is broker.QoS
    assert broker.SentinelTransport.Channel.QoS is broker.QoS
