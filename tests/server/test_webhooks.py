"""Push webhooks against real workers: a signed push is applied, a forged one changes nothing.

One stack (Git repo, fleet spec, a worker, beat) on the session's local control
plane, with ``fleetsync server`` in front. Beat's interval is ten minutes, so
after the first sync only the webhook can bring a commit to the cluster: each
test commits, sends what GitHub would send (``X-Hub-Signature-256`` over the
real body, from a real HTTP client), and waits for the unit at the commit.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Iterator

import pytest
import redis
import requests

from scheduler.server.hooks import github_signature
from tests.support.serverproc import ServerProcess
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

SECRET = "push-webhook-secret"
TIMEOUT = 90.0


def add_webhook(stack: Stack) -> None:
    """The stack's spec, with ``webhook: {secretEnv: ...}`` on its source."""
    import os

    text = stack.spec.read_text().replace(
        "    branch: main\n", "    branch: main\n    webhook: {secretEnv: TEST_HOOK_SECRET}\n", 1)
    stack.spec.write_text(text)
    now = time.time() + 5
    os.utime(stack.spec, (now, now))


@pytest.fixture(scope="module")
def fleet(dev_fleet, redis_url, tmp_path_factory) -> Iterator[tuple[Stack, ServerProcess]]:
    from tests.conftest import new_redis_db

    stack = Stack(tmp_path_factory.mktemp("webhooks"), new_redis_db(redis_url),
                  dev_fleet.clusters, interval=600)
    stack.write_spec(["dev-1"])
    add_webhook(stack)
    server = ServerProcess(stack.env(TEST_HOOK_SECRET=SECRET), stack.tmp / "server.log")
    try:
        stack.start_worker("w1")
        stack.start_beat()
        server.wait_ready()
        head = stack.repo.head()
        stack.wait("dev-1 Ready (beat's first tick)", lambda: stack.ready_at("dev-1", head),
                   timeout=TIMEOUT)
        yield stack, server
    finally:
        server.stop()
        stack.stop()


def github_push(sha: str, files: list[str]) -> bytes:
    return json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": sha,
                       "commits": [{"id": sha, "added": [], "modified": files, "removed": []}],
                       "head_commit": {"id": sha}}).encode()


def send(server: ServerProcess, body: bytes, *, secret: str = SECRET,
         delivery: str | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push",
               "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
               "X-Hub-Signature-256": github_signature(secret, body)}
    return requests.post(f"{server.base}/hooks/github/git", data=body, headers=headers,
                         timeout=30)


def configmap(kube_clients: dict, stack: Stack) -> dict[str, Any]:
    from kubernetes import client

    api = client.CoreV1Api(kube_clients["dev-1"])
    return api.read_namespaced_config_map("settings", stack.namespace).data


def test_a_signed_push_is_applied_and_recorded_with_its_commit(fleet, kube_clients) -> None:
    stack, server = fleet
    sha = stack.commit("settings: value two", value="two")
    answer = send(server, github_push(sha, ["app/config.yaml"]), delivery="first-push")
    assert answer.status_code == 202, answer.text
    assert [(e["task"], e["args"]) for e in answer.json()["enqueued"]] == [
        ("fleetsync.sync", [stack.app, None])]              # the changed application first
    assert [(t["task"], t["args"]) for t in answer.json()["then"]] == [
        ("fleetsync.reconcile_cluster", ["dev-1"])]         # then every unit of the source
    took = stack.wait(f"dev-1 Ready at {sha[:8]}", lambda: stack.ready_at("dev-1", sha),
                      timeout=TIMEOUT)
    assert configmap(kube_clients, stack)["value"] == "two"
    entry = next(e for e in stack.history("dev-1") if e["revision"] == sha)
    assert entry["author"] == "Test Author" and entry["subject"] == "settings: value two"
    assert entry["author_email"] == "author@example.com" and entry["committed_at"]
    print(f"webhook to applied: {took:.2f}s")


def test_a_forged_push_is_refused_and_changes_nothing(fleet, kube_clients) -> None:
    stack, server = fleet
    before = stack.store.source_record("git")
    sha = stack.commit("settings: value three", value="three")
    broker = redis.Redis.from_url(stack.redis_url)
    forged = send(server, github_push(sha, ["app/config.yaml"]), secret="guessed")
    assert forged.status_code == 401
    assert broker.llen("fetch") == 0 and not broker.exists("fleetsync:source:git:fetch-wanted")
    assert stack.store.source_record("git").revision == before.revision
    assert "webhook refused" in server.log.read_text()
    big = b'{"ref": "refs/heads/main", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert send(server, big).status_code == 413
    assert broker.llen("fetch") == 0
    # the genuine push of the same commit is applied; one naming no files only fetches
    plain = send(server, json.dumps({"ref": "refs/heads/main", "after": sha}).encode())
    assert plain.status_code == 202
    assert [e["task"] for e in plain.json()["enqueued"]] == ["fleetsync.fetch_source"]
    stack.wait(f"dev-1 Ready at {sha[:8]}", lambda: stack.ready_at("dev-1", sha), timeout=TIMEOUT)
    assert configmap(kube_clients, stack)["value"] == "three"


def test_a_replayed_old_delivery_is_harmless(fleet, kube_clients) -> None:
    stack, server = fleet
    head = stack.repo.head()
    old = stack.history("dev-1")[-1]["revision"]               # the first revision synced
    assert old != head
    seen = send(server, github_push(old, ["app/config.yaml"]), delivery="first-push")
    assert seen.status_code == 202 and seen.json()["enqueued"] == []
    assert seen.json()["ignored"] == "delivery seen before"
    fetched_before = stack.store.source_record("git").fetched_at
    replay = send(server, github_push(old, ["app/config.yaml"]))     # a new id, an old body
    assert replay.status_code == 202
    stack.wait("the replay's fetch ran", lambda: stack.store.source_record("git").fetched_at
               > fetched_before, timeout=TIMEOUT)
    record = stack.store.source_record("git")
    assert record.revision == head                  # a fetch moves only to what main is now
    assert stack.ready_at("dev-1", head)
    assert configmap(kube_clients, stack)["value"] == "three"
