"""Request bodies at a real ``fleetsync server``: capped on every route, parsed no deeper
than 64 levels, and a webhook's delivery id recorded only once the delivery was handled.

A process on the real Redis, as in test_api.py; what the server enqueues is read back
from the broker's queues.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

import pytest
import redis
import requests

from scheduler.server.hooks import github_signature
from tests.support.serverproc import ServerProcess

SECRET = "webhook-secret-for-body-tests"
CAP = 64 * 1024
SPEC = """sources:
  - name: git
    url: https://git.example.com/org/gitops.git
    branch: main
    webhook: {secretEnv: TEST_HOOK_SECRET}
clusters:
  - name: prod
    kubeconfig: /nonexistent
applications:
  - name: web
    source: git
    path: apps/web
    clusters: {names: [prod]}
"""


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, redis.Redis]]:
    from tests.conftest import new_redis_db

    tmp = tmp_path_factory.mktemp("server-bodies")
    url = new_redis_db(redis_url)
    (tmp / "fleet.yaml").write_text(SPEC)
    env = {**os.environ, "FLEETSYNC_REDIS_URL": url, "FLEETSYNC_FLEET": str(tmp / "fleet.yaml"),
           "FLEETSYNC_LOG_LEVEL": "INFO", "TEST_HOOK_SECRET": SECRET,
           "FLEETSYNC_SERVER_MAX_BODY": str(CAP)}
    server = ServerProcess(env, tmp / "server.log")
    try:
        server.wait_ready()
        yield server, redis.Redis.from_url(url)
    finally:
        server.stop()


def nested(depth: int) -> object:
    """A JSON value ``depth`` arrays deep, built without recursion."""
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def deep_json(depth: int, **fields: object) -> bytes:
    """``fields`` as a JSON object whose ``x`` nests ``depth`` levels (written flat:
    Python's own encoder recurses too)."""
    head = json.dumps(fields)[:-1] + (', ' if fields else '') + '"x": '
    return (head + "[" * depth + "1" + "]" * depth + "}").encode()


def push(after: str) -> dict[str, object]:
    return {"ref": "refs/heads/main", "after": after,
            "commits": [{"added": [], "modified": ["apps/web/a.yaml"], "removed": []}]}


def send_push(server: ServerProcess, body: bytes, delivery: str) -> requests.Response:
    return requests.post(f"{server.base}/hooks/github/git", data=body, timeout=30, headers={
        "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json", "X-Hub-Signature-256": github_signature(SECRET, body)})


def test_a_signed_push_nested_too_deep_is_400_and_its_delivery_is_not_recorded(served) -> None:
    server, broker = served
    queued = broker.llen("reconcile"), broker.llen("fetch")
    deep = send_push(server, deep_json(20_000, **push("d" * 40)), "delivery-deep")
    assert deep.status_code == 400, deep.text
    assert deep.json() == {"error": "the body nests deeper than 64 levels"}
    assert (broker.llen("reconcile"), broker.llen("fetch")) == queued

    # the forge sends the delivery again (a fixed payload, the same id): it is handled now
    again = send_push(server, json.dumps(push("e" * 40)).encode(), "delivery-deep")
    assert again.status_code == 202, again.text
    assert "ignored" not in again.json(), again.json()
    assert [e["task"] for e in again.json()["enqueued"]] == ["fleetsync.sync"]
    assert broker.llen("reconcile") == queued[0] + 1

    replay = send_push(server, json.dumps(push("e" * 40)).encode(), "delivery-deep")
    assert replay.json()["ignored"] == "delivery seen before"       # handled once, recorded
    assert broker.llen("reconcile") == queued[0] + 1


def test_a_push_nested_within_the_limit_is_read(served) -> None:
    server, _ = served
    answer = send_push(server, deep_json(60, **push("f" * 40)), "delivery-60-deep")
    assert answer.status_code == 202 and answer.json()["after"] == "f" * 40, answer.text


@pytest.mark.parametrize("path", ["/api/v1/sync", "/api/v1/suspend",
                                  "/api/v1/rollouts/web/pause"])
def test_api_bodies_nested_too_deep_are_400(served, path: str) -> None:
    server, broker = served
    before = broker.llen("reconcile")
    answer = requests.post(f"{server.base}{path}", data=deep_json(20_000, app="web"),
                           headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"error": "the body nests deeper than 64 levels"}
    assert broker.llen("reconcile") == before


@pytest.mark.parametrize("path", ["/api/v1/sync", "/api/v1/suspend", "/hooks/github/git",
                                  "/hooks/github/no-such-source", "/"])
def test_every_body_is_capped(served, path: str) -> None:
    server, broker = served
    before = broker.llen("reconcile")
    big = json.dumps({"app": "web", "cluster": "prod", "pad": "x" * CAP}).encode()
    headers = {"Content-Type": "application/json"}
    declared = requests.post(f"{server.base}{path}", data=big, headers=headers, timeout=30)
    assert declared.status_code == 413, declared.text
    assert declared.json() == {"error": f"body larger than {CAP} bytes"}
    streamed = requests.post(f"{server.base}{path}", headers=headers, timeout=30,
                             data=iter([big[:4096]] * (CAP // 4096 + 2)))   # no Content-Length
    assert streamed.status_code == 413, streamed.text
    assert broker.llen("reconcile") == before


def test_a_body_under_the_cap_is_handled(served) -> None:
    server, broker = served
    before = broker.llen("reconcile")
    body = {"app": "web", "cluster": "prod", "pad": "x" * (CAP - 100)}
    answer = requests.post(f"{server.base}/api/v1/sync", json=body, timeout=30)
    assert answer.status_code == 202, answer.text
    assert broker.llen("reconcile") == before + 1
