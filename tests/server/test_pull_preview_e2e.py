"""A GitHub pull request previewed end to end: a real Git branch, the real server, real workers,
a real kube-apiserver, and a loopback GitHub API (``tests/support/forge_api.py``).

The branch changes the application's ConfigMap and a Secret's password; a signed ``pull_request`` webhook starts a
preview of its head against main, and the server posts a pending status at once, then the
final status and one comment naming the objects and their field paths (the Secret's
path, never its value). A second push to the
branch (``synchronize``) adds an object: the same comment is edited (PATCH, same id), no
second comment. Nothing is written to the cluster: the live ConfigMap keeps its value and
resourceVersion, and the unit stays Ready at main's revision.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from typing import Any, Iterator

import pytest
import requests

from scheduler.server.hooks import github_signature
from tests.support.forge_api import ForgeApi
from tests.support.serverproc import ServerProcess
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

SECRET = "pull-request-e2e-secret"
TOKEN = "ghp_" + "e" * 36
TIMEOUT = 120.0
PASSWORD = "correct-horse-battery-staple"


def with_webhook_and_route(stack: Stack, api: str) -> None:
    text = stack.spec.read_text().replace(
        "    branch: main\n", "    branch: main\n    webhook: {secretEnv: TEST_HOOK_SECRET}\n", 1)
    text += ("notifications:\n  routes:\n"
             f"    - {{name: gh, provider: github, api: \"{api}\", repository: org/fleet, "
             "tokenEnv: GH_TOKEN}\n")
    stack.spec.write_text(text)
    now = time.time() + 5
    os.utime(stack.spec, (now, now))


@pytest.fixture(scope="module")
def fleet(dev_fleet, redis_url, tmp_path_factory
          ) -> Iterator[tuple[Stack, ServerProcess, ForgeApi]]:
    from tests.conftest import new_redis_db

    stack = Stack(tmp_path_factory.mktemp("pr-e2e"), new_redis_db(redis_url),
                  dev_fleet.clusters, interval=600)
    github = ForgeApi(TOKEN)
    stack.repo.write("app/secret.yaml", secret(stack, "old-" + PASSWORD))
    stack.repo.commit("a Secret")
    stack.write_spec(["dev-1"])                 # pushes
    with_webhook_and_route(stack, github.url)
    server = ServerProcess(stack.env(TEST_HOOK_SECRET=SECRET, GH_TOKEN=TOKEN),
                           stack.tmp / "server.log")
    try:
        stack.start_worker("w1")
        stack.start_beat()
        server.wait_ready()
        head = stack.repo.head()
        stack.wait("dev-1 Ready (beat's first tick)", lambda: stack.ready_at("dev-1", head),
                   timeout=TIMEOUT)
        yield stack, server, github
    finally:
        server.stop()
        stack.stop()
        github.close()


def secret(stack: Stack, password: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "db", "namespace": stack.namespace},
                       "stringData": {"password": password}})


def pull_request(action: str, sha: str) -> bytes:
    return json.dumps({
        "action": action, "number": 12,
        "pull_request": {"number": 12, "html_url": "https://github.com/org/fleet/pull/12",
                         "head": {"sha": sha, "ref": "feature"}, "base": {"ref": "main"}},
        "repository": {"full_name": "org/fleet",
                       "clone_url": "https://github.com/org/fleet.git"}}).encode()


def send(server: ServerProcess, body: bytes) -> requests.Response:
    return requests.post(f"{server.base}/hooks/github/git", data=body, timeout=30, headers={
        "Content-Type": "application/json", "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": github_signature(SECRET, body)})


def live(kube_clients: dict, stack: Stack) -> Any:
    from kubernetes import client

    return client.CoreV1Api(kube_clients["dev-1"]).read_namespaced_config_map(
        "settings", stack.namespace)


def test_a_pull_request_is_previewed_and_commented_once(fleet, kube_clients) -> None:
    stack, server, github = fleet
    main = stack.repo.head()
    before = live(kube_clients, stack)
    stack.repo.branch("feature")
    stack.repo.write("app/secret.yaml", secret(stack, PASSWORD))
    first = stack.commit("settings: value two, and the password", value="two")
    stack.repo.switch("main")

    sent = time.monotonic()
    opened = send(server, pull_request("opened", first))
    assert opened.status_code == 202, opened.text
    pid = opened.json()["preview"]
    github.wait("the pending status", lambda: len(github.statuses()) >= 1, timeout=TIMEOUT)
    assert github.statuses()[0]["state"] == "pending"
    github.wait("the comment", lambda: github.got("POST", "/issues/12/comments"),
                timeout=TIMEOUT)
    print(f"pull request webhook to its comment: {time.monotonic() - sent:.2f}s")
    statuses = github.statuses()
    assert [s["state"] for s in statuses] == ["pending", "success"], statuses
    assert statuses[-1]["description"] == "1 app, 1 cluster changes"
    assert statuses[-1]["target_url"].endswith(f"/previews/{pid}")
    (comment_id,) = github.comments
    body = github.comments[comment_id]["body"]
    assert "| dev-1 | changed | 0 | 2 | 0 | 0 |" in body, body
    assert f"- update v1 ConfigMap {stack.namespace}/settings: data.value" in body, body
    assert f"- update v1 Secret {stack.namespace}/db: data.password" in body, body
    for value in (PASSWORD, base64.b64encode(PASSWORD.encode()).decode()):
        assert value not in body and value not in server.log.read_text()

    stack.repo.switch("feature")
    second = stack.commit("settings: value three, and an extra", value="three", extra=True)
    stack.repo.switch("main")
    pushed = send(server, pull_request("synchronize", second))
    assert pushed.status_code == 202, pushed.text
    github.wait("the comment edited", lambda: github.got("PATCH"), timeout=TIMEOUT)
    (edit,) = github.got("PATCH")
    assert edit.path == f"/repos/org/fleet/issues/comments/{comment_id}"
    assert f"- create v1 ConfigMap {stack.namespace}/extra" in edit.body["body"], edit.body
    assert len(github.got("POST", "/comments")) == 1 and list(github.comments) == [comment_id]
    github.wait("the second final status", lambda: len(github.statuses()) == 4, timeout=TIMEOUT)
    assert [s["state"] for s in github.statuses()] == ["pending", "success"] * 2

    costs = requests.get(f"{server.base}/api/v1/previews/{pid}", timeout=10).json()["costs"]
    assert costs["writes"] == 0 and costs["dry_runs"] >= 1, costs
    after = live(kube_clients, stack)           # a preview writes nothing
    assert after.data == before.data and after.data["value"] == "one"
    assert after.metadata.resource_version == before.metadata.resource_version
    assert stack.ready_at("dev-1", main)
    assert TOKEN not in server.log.read_text()
