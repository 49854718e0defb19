"""Flower as ``fleetsync flower`` starts it, asked by web pages and by local scripts.

A real Flower (``fleetsync flower`` on loopback, no authentication, the real Redis) and
real HTTP requests that carry the ``Origin``, ``Host`` and ``Sec-Fetch-Site`` a browser
would send for a page of another site. What must hold: such a page gets no CORS grant
and its requests are refused (the preflight too); a Host that is not a loopback name is
refused; remote control is off; a local script (no ``Origin``) still reads the tasks
and sends one. With basic auth the guard stands aside and Flower's own checks apply.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis
import requests

from scheduler.commands.flower_guard import Asked, refusal
from tests.conftest import ROOT, new_redis_db
from tests.support.stack import free_port

TIMEOUT = 90.0
CONTROL = ["/api/worker/shutdown/w1@host", "/api/worker/pool/restart/w1@host",
           "/api/worker/pool/grow/w1@host?n=1", "/api/worker/pool/shrink/w1@host?n=1",
           "/api/worker/pool/autoscale/w1@host?min=1&max=2",
           "/api/worker/queue/add-consumer/w1@host?queue=q",
           "/api/worker/queue/cancel-consumer/w1@host?queue=q",
           "/api/task/revoke/0f1e2d3c?terminate=true", "/api/task/rate-limit/fleetsync.sync?ratelimit=1",
           "/api/task/timeout/fleetsync.sync?soft=1", "/api/task/abort/0f1e2d3c"]


class Flower:
    def __init__(self, tmp: Path, redis_url: str, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"flower-{self.port}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scheduler.cli", "flower", "--port", str(self.port)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(ROOT), "FLEETSYNC_REDIS_URL": redis_url,
                     "FLEETSYNC_FLOWER_DB": str(tmp / f"flower-{self.port}.db"), **env})
        deadline = time.monotonic() + TIMEOUT
        while not self._healthy():
            assert self.proc.poll() is None, f"Flower exited: {self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"Flower did not answer: {self.log.read_text()}"
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.base}/healthcheck", timeout=5).status_code in (200, 401)
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


@pytest.fixture(scope="module")
def broker_url(redis_url: str) -> str:
    return new_redis_db(redis_url)


@pytest.fixture(scope="module")
def flower(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flower]:
    running = Flower(tmp_path_factory.mktemp("flower-guard"), broker_url)
    yield running
    running.stop()


def queued(broker_url: str) -> int:
    client = redis.Redis.from_url(broker_url)
    return sum(client.llen(k) for k in client.keys("*") if client.type(k) == b"list")


EVIL = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}


def no_cors_grant(answer: requests.Response) -> bool:
    return not [h for h in answer.headers if h.lower().startswith("access-control-")]


def test_a_page_of_another_origin_gets_no_grant_and_is_refused(flower: Flower,
                                                               broker_url: str) -> None:
    before = queued(broker_url)
    read = requests.get(f"{flower.base}/api/tasks", headers=EVIL, timeout=10)
    preflight = requests.options(f"{flower.base}/api/task/send-task/fleetsync.sync", timeout=10,
                                 headers={**EVIL, "Access-Control-Request-Method": "POST",
                                          "Access-Control-Request-Headers": "content-type"})
    send = requests.post(f"{flower.base}/api/task/send-task/fleetsync.sync", json={"args": ["web"]},
                         headers=EVIL, timeout=10)
    form = requests.post(f"{flower.base}/api/task/send-task/fleetsync.sync", data={"args": "x"},
                         headers={"Sec-Fetch-Site": "same-site"}, timeout=10)
    local_port = requests.post(f"{flower.base}/api/task/send-task/fleetsync.sync", timeout=10,
                               json={"args": ["web"]}, headers={"Origin": "http://127.0.0.1:3000"})
    for answer in (read, preflight, send, form, local_port):
        assert answer.status_code == 403, (answer.request.method, answer.text)
        assert no_cors_grant(answer), answer.headers
    assert "another origin" in send.text
    assert queued(broker_url) == before                 # nothing was enqueued


def test_a_host_that_is_not_a_loopback_name_is_refused(flower: Flower) -> None:
    for path in ("/api/tasks", "/tasks", "/"):
        rebound = requests.get(f"{flower.base}{path}", headers={"Host": f"evil.example:{flower.port}"},
                               timeout=10)
        assert rebound.status_code == 403 and "not a loopback name" in rebound.text, path
    assert requests.get(f"{flower.base}/api/tasks", headers={"Host": f"localhost:{flower.port}"},
                        timeout=10).status_code == 200


@pytest.mark.parametrize("path", CONTROL)
def test_remote_control_is_off_without_authentication(flower: Flower, path: str) -> None:
    answer = requests.post(f"{flower.base}{path}", timeout=10)     # a local script, no Origin
    assert answer.status_code == 403, answer.text
    assert "needs authentication" in answer.text


def test_a_local_script_reads_tasks_and_sends_one(flower: Flower, broker_url: str) -> None:
    before = queued(broker_url)
    listed = requests.get(f"{flower.base}/api/tasks", timeout=10)
    assert listed.status_code == 200 and no_cors_grant(listed), listed.headers
    sent = requests.post(f"{flower.base}/api/task/send-task/fleetsync.ping", json={"args": []},
                         timeout=10)
    assert sent.status_code == 200 and sent.json()["task-id"], sent.text
    own = requests.post(f"{flower.base}/api/task/send-task/fleetsync.ping", json={"args": []},
                        headers={"Origin": flower.base, "Sec-Fetch-Site": "same-origin"},
                        timeout=10)                     # Flower's own pages
    assert own.status_code == 200, own.text
    assert queued(broker_url) == before + 2
    assert requests.get(f"{flower.base}/tasks", timeout=10).status_code == 200


def test_with_basic_auth_flower_checks_and_remote_control_is_the_operators(
        broker_url: str, tmp_path: Path) -> None:
    authed = Flower(tmp_path, broker_url, FLOWER_BASIC_AUTH="ops:s3cret")
    try:
        credentials = {"Authorization": "Basic " + base64.b64encode(b"ops:s3cret").decode()}
        assert requests.post(f"{authed.base}{CONTROL[0]}", timeout=10).status_code == 401
        unknown = requests.post(f"{authed.base}{CONTROL[0]}", headers=credentials, timeout=10)
        assert unknown.status_code == 404 and "Unknown worker" in unknown.text   # Flower's answer
        cross = requests.post(f"{authed.base}{CONTROL[0]}", headers={**credentials, **EVIL},
                              timeout=10)
        assert cross.status_code == 403                 # Flower's own cross-site check
    finally:
        authed.stop()


@pytest.mark.parametrize("asked,why", [
    (Asked("GET", "http", "127.0.0.1:5555"), ""),
    (Asked("GET", "http", "localhost:5555", "http://localhost:5555", "same-origin"), ""),
    (Asked("GET", "http", "[::1]:5555"), ""),
    (Asked("GET", "http", "flower.localhost:5555"), ""),
    (Asked("GET", "http", "evil.example:5555"), "not a loopback name"),
    (Asked("GET", "http", "127.0.0.1.evil.example"), "not a loopback name"),
    (Asked("OPTIONS", "http", "127.0.0.1:5555", "https://evil.example"), "another origin"),
    (Asked("GET", "http", "127.0.0.1:5555", "http://127.0.0.1"), "another origin"),
    (Asked("POST", "http", "127.0.0.1:5555", "null"), "another origin"),
    (Asked("POST", "http", "127.0.0.1:5555", fetch_site="cross-site"), "another site"),
    (Asked("GET", "http", "127.0.0.1:5555", fetch_site="cross-site"), ""),   # a link to a task
    (Asked("POST", "http", "127.0.0.1:5555", control=True), "needs authentication"),
])
def test_refusal(asked: Asked, why: str) -> None:
    found = refusal(asked)
    assert (why in found) if why else found == "", found
