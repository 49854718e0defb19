"""A stage's retry that the broker refuses is sent again, not dropped.

Celery turns a retry it cannot publish into ``Reject(requeue=False)``: during a
Redis failover that dropped the run's only message, and the unit waited for the
queued timeout. Here the broker is a real redis-server that is not up yet when the
retry is first sent (publishing without Celery's own connection retries, as a
failover's closed channel fails), and comes up during the first pause.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis
from celery import Celery
from celery.exceptions import Reject, Retry

from tests.conftest import need
from tests.support.stack import free_port
from workers import tasks


def _start_redis(port: int) -> subprocess.Popen:
    binary = shutil.which("redis-server") or need("redis-server", "apt-get install redis-server")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if client.ping():
                return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def _stage(port: int):
    app = Celery("retry-publish", broker=f"redis://127.0.0.1:{port}/0")
    app.conf.task_publish_retry = False

    @app.task(bind=True, name="fleetsync.test.stage")
    def stage(self, unit: str, **kw):
        return unit

    stage.push_request(id="task-1", args=["dev-1/web"], kwargs={"run_id": "run-1"}, retries=0,
                       called_directly=False, is_eager=False, delivery_info={})
    return stage


def test_a_retry_is_sent_again_once_the_broker_is_back():
    port = free_port()
    stage, started = _stage(port), []
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if not started:
            started.append(_start_redis(port))

    try:
        with pytest.raises(Retry):
            tasks.retry(stage, pause=pause, countdown=3, kwargs={"run_id": "run-1"})
        assert len(pauses) == 1
        queued = redis.Redis(port=port).lrange("celery", 0, -1)
        assert len(queued) == 1 and b"run-1" in queued[0]
    finally:
        for proc in started:
            proc.kill()
            proc.wait(10)


def test_a_broker_that_stays_away_gives_the_reject_back(monkeypatch):
    monkeypatch.setattr(tasks, "PUBLISH_PATIENCE", 0.5)     # one pause, then give up
    pauses: list[float] = []
    with pytest.raises(Reject):
        tasks.retry(_stage(free_port()), pause=pauses.append, countdown=3, kwargs={})
    assert pauses == [0.5]
