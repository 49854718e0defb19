"""In push mode a run is one task: the worker that renders it applies it in the same task.

Seen as Flower sees it, through the workers' own task events on the real broker: a cold
run of a unit is one ``fleetsync.render`` task whose result is the run's (phase,
summary, what it rendered), no ``fleetsync.apply`` task is sent, and the history
entry names that task. ``FLEETSYNC_SPLIT_STAGES=1`` (as pull mode does) keeps the two
tasks: the render's result says "apply next" and the apply's carries the phase. A run
whose apply has to wait (its dependency is not Ready yet) is sent on as an apply task
with the countdown, not retried as a render.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.conftest import new_redis_db
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


class TaskEvents:
    """Every task event the workers publish, gathered by a thread (as Flower does)."""

    def __init__(self, redis_url: str) -> None:
        from celery import Celery

        self.app = Celery(broker=redis_url)
        self.events: list[dict[str, Any]] = []
        self.names: dict[str, str] = {}            # task id: name, from task-received
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._capture, daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "the event receiver did not start"

    def _capture(self) -> None:
        def on_event(event: dict[str, Any]) -> None:
            if event.get("type") == "task-received":
                self.names[event["uuid"]] = event.get("name", "")
            self.events.append(event)

        with self.app.connection_for_read() as conn:
            self.receiver = self.app.events.Receiver(conn, handlers={"*": on_event})
            self.receiver.on_consume_ready = lambda *_a, **_k: self._ready.set()
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def stop(self) -> None:
        self.receiver.should_stop = True
        self._thread.join(timeout=10)

    def succeeded(self, name: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("type") == "task-succeeded"
                and self.names.get(e.get("uuid", "")) == name]

    def received(self, name: str) -> list[str]:
        return [uuid for uuid, n in list(self.names.items()) if n == name]


def run_once(tmp_path: Any, redis_url: str, clusters: dict[str, str],
             **env: str) -> tuple[Stack, TaskEvents, str]:
    stack = Stack(tmp_path, new_redis_db(redis_url), dict(clusters))
    stack.write_spec(["dev-1"])
    events = TaskEvents(stack.redis_url)
    stack.start_worker("w", **env)
    stack.start_beat()
    revision = stack.repo.head()
    stack.wait("dev-1 Ready", lambda: stack.ready_at("dev-1", revision), timeout=90)
    return stack, events, revision


def test_a_cold_run_is_one_render_task_whose_result_is_the_runs(dev_fleet, redis_url,
                                                                  tmp_path):
    stack, events, revision = run_once(tmp_path, redis_url, dev_fleet.clusters)
    try:
        entry = stack.history("dev-1")[0]
        stack.wait("the run's task succeeded", lambda: any(
            e["uuid"] == entry["task_id"] for e in events.succeeded("fleetsync.render")))
        assert events.received("fleetsync.apply") == []
        done = next(e for e in events.succeeded("fleetsync.render")
                    if e["uuid"] == entry["task_id"])
        result = done["result"]
        assert result.startswith("{'phase': 'Ready'"), result
        assert "'render': 'rendered " in result and "apply next" not in result
        assert entry["revision"] == revision and entry["result"] == "Ready"
    finally:
        events.stop()
        stack.stop()


def test_split_stages_keeps_render_and_apply_as_two_tasks(dev_fleet, redis_url, tmp_path):
    stack, events, _ = run_once(tmp_path, redis_url, dev_fleet.clusters,
                                FLEETSYNC_SPLIT_STAGES="1")
    try:
        entry = stack.history("dev-1")[0]
        stack.wait("the apply task succeeded", lambda: any(
            e["uuid"] == entry["task_id"] for e in events.succeeded("fleetsync.apply")))
        rendered = events.succeeded("fleetsync.render")
        assert rendered and all("apply next" in e["result"] for e in rendered)
        applied = next(e for e in events.succeeded("fleetsync.apply")
                       if e["uuid"] == entry["task_id"])
        assert applied["result"].startswith("{'phase': 'Ready'")
    finally:
        events.stop()
        stack.stop()
