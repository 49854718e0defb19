"""A worker's task events go out in batches (``workers/events.py``): tasks that run
close together share their PUBLISH commands, and every event still arrives, each
task's in order (received, started, succeeded), as Flower reads them."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import redis

PINGS = 40


class EventWire:
    """Every task-event PUBLISH on the broker, as it goes over the wire."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("*celeryev/task.*")
        self.publishes: list[list[dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.2)
            if message is None:
                continue
            envelope = json.loads(message["data"])
            body = envelope["body"]
            if envelope.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            events = json.loads(body)
            self.publishes.append(events if isinstance(events, list) else [events])

    def events_of(self, ids: set[str]) -> list[dict[str, Any]]:
        return [e for batch in list(self.publishes) for e in batch if e.get("uuid") in ids]

    def publishes_of(self, ids: set[str]) -> int:
        return sum(1 for batch in list(self.publishes)
                   if any(e.get("uuid") in ids for e in batch))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.pubsub.close()


def test_task_events_share_publishes_and_all_arrive_in_order(celery_app, celery_worker,
                                                           redis_url):
    wire = EventWire(redis_url)
    try:
        # PSUBSCRIBE went out when the wire was made; a first task is not counted
        assert celery_app.send_task("fleetsync.ping").get(timeout=30)["pong"]
        results = [celery_app.send_task("fleetsync.ping", args=[{"n": i}])
                   for i in range(PINGS)]
        for result in results:
            assert result.get(timeout=60)["pong"] is True
        ids = {r.id for r in results}

        def all_succeeded() -> bool:
            done = {e["uuid"] for e in wire.events_of(ids) if e["type"] == "task-succeeded"}
            return done == ids
        deadline = time.monotonic() + 30
        while not all_succeeded():
            assert time.monotonic() < deadline, "not every task-succeeded event arrived"
            time.sleep(0.1)

        events = wire.events_of(ids)
        for uuid in ids:
            kinds = [e["type"] for e in sorted(events, key=lambda e: e["clock"])
                     if e["uuid"] == uuid]
            assert kinds == ["task-received", "task-started", "task-succeeded"], kinds
        publishes = wire.publishes_of(ids)
        # three events per task; one PUBLISH each before batching
        assert publishes * 2 <= len(events), f"{publishes} publishes for {len(events)} events"
    finally:
        wire.close()
