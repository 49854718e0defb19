"""Registry push notifications against real workers: a chart pushed with helm and announced
in the distribution notification format is applied at once; a forged one changes nothing.

One stack (an ``oci://`` chart source with ``webhook:``, a worker, beat) on the
session's control planes, ``fleetsync server`` in front, the real registry
behind TLS and basic auth. The source's interval is an hour, so after the first
sync only the notification brings the new chart version to the clusters.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import redis
import requests

from scheduler.server import registryhooks
from tests.conftest import new_redis_db
from tests.support.helmutil import helm  # noqa: F401  (a fixture)
from tests.support.ocifleet import push_chart, write_chart_spec
from tests.support.registry import PASSWORD, USER, Registry, registry, unique_repo  # noqa: F401
from tests.support.serverproc import ServerProcess
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
SECRET = "registry-hook-secret"
TIMEOUT = 120.0


def notification(repository: str, tag: str, digest: str, action: str = "push") -> bytes:
    """What CNCF distribution sends to a notifications endpoint."""
    return json.dumps({"events": [{
        "id": str(uuid.uuid4()), "timestamp": "2026-12-07T12:00:00Z", "action": action,
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 700,
                   "digest": f"sha256:{digest}", "repository": repository, "tag": tag},
        "request": {"id": "r1", "host": "registry.example", "method": "PUT"},
        "actor": {"name": USER}, "source": {"addr": "registry:5000"}}]}).encode()


def send(server: ServerProcess, body: bytes, token: str = SECRET) -> requests.Response:
    return requests.post(f"{server.base}/hooks/registry/charts", data=body, timeout=30,
                         headers={"Content-Type": "application/vnd.docker.distribution.events.v1+json",
                                  "Authorization": f"Bearer {token}"})


@pytest.fixture()
def fleet(dev_fleet, redis_url: str, registry: Registry, helm: Path,
          tmp_path: Path) -> Iterator[tuple[Stack, ServerProcess, str]]:
    stack = Stack(tmp_path, new_redis_db(redis_url), {"dev-1": dev_fleet.clusters["dev-1"]},
                  env_extra={"OCI_USER": USER, "OCI_PASS": PASSWORD,
                             "SSL_CERT_FILE": str(registry.ca_file), "FLEETSYNC_HELM_BIN": str(helm)})
    repo = unique_repo()
    first = push_chart(registry, helm, tmp_path, repo, "0.1.0")
    write_chart_spec(stack, f"oci://{registry.basic.host}/{repo}", "0.x", interval="1h",
                     extra=("    webhook: {secretEnv: TEST_HOOK_SECRET}",))
    server = ServerProcess(stack.env(TEST_HOOK_SECRET=SECRET), stack.tmp / "server.log")
    try:
        stack.start_worker("w1")
        stack.start_beat()
        server.wait_ready()
        stack.wait("dev-1 Ready at 0.1.0", lambda: stack.ready_at("dev-1", first), timeout=TIMEOUT)
        yield stack, server, repo
    finally:
        server.stop()
        stack.stop()


def test_a_push_notification_fetches_the_chart_source(fleet, registry: Registry, helm: Path,
                                                      tmp_path: Path, kube_clients: dict) -> None:
    stack, server, repo = fleet
    second = push_chart(registry, helm, tmp_path, repo, "0.2.0")
    broker = redis.Redis.from_url(stack.redis_url)

    forged = send(server, notification(f"{repo}/web", "0.2.0", second), token="guessed")
    assert forged.status_code == 401
    pulled = send(server, notification(f"{repo}/web", "0.2.0", second, action="pull"))
    assert pulled.status_code == 202 and pulled.json()["ignored"] == "the notification holds no push"
    other = send(server, notification("elsewhere/web", "0.2.0", second))
    assert other.status_code == 202 and "not to the source's" in other.json()["ignored"]
    assert broker.llen("fetch") == 0

    answer = send(server, notification(f"{repo}/web", "0.2.0", second))
    assert answer.status_code == 202, answer.text
    assert [e["task"] for e in answer.json()["enqueued"]] == ["fleetsync.fetch_source"]
    assert answer.json()["pushed"] == [f"{repo}/web:0.2.0"]
    stack.wait("dev-1 Ready at 0.2.0", lambda: stack.ready_at("dev-1", second), timeout=TIMEOUT)
    from kubernetes import client

    deployment = client.AppsV1Api(kube_clients["dev-1"]).read_namespaced_deployment(
        "shop-web", stack.namespace)
    assert deployment.metadata.labels["helm.sh/chart"] == "web-0.2.0"


def test_harbor_and_docker_hub_shapes_are_read() -> None:
    harbor = json.dumps({"type": "PUSH_ARTIFACT", "occur_at": 1, "operator": "admin",
                         "event_data": {"resources": [{"digest": "sha256:ab", "tag": "1.2.0",
                                                       "resource_url": "h/library/web:1.2.0"}],
                                        "repository": {"name": "web", "namespace": "library",
                                                       "repo_full_name": "library/web"}}})
    assert registryhooks.parse(harbor.encode()) == (
        [registryhooks.RegistryPush("library/web", "1.2.0", "sha256:ab")], "")
    hub = json.dumps({"push_data": {"tag": "latest", "pusher": "me"},
                      "repository": {"repo_name": "me/web", "name": "web"}})
    assert registryhooks.parse(hub.encode()) == ([registryhooks.RegistryPush("me/web", "latest")], "")
    deleted = json.dumps({"type": "DELETE_ARTIFACT", "event_data": {"repository": {
        "repo_full_name": "library/web"}}})
    assert registryhooks.parse(deleted.encode()) == ([], "")
    assert registryhooks.parse(b"not json") == ([], "")
    assert registryhooks.verify(SECRET, {"authorization": f"Bearer {SECRET}"}) == ""
    assert registryhooks.verify(SECRET, {"authorization": SECRET}) == ""       # Harbor's auth header
    assert registryhooks.verify(SECRET, {"x-fleetsync-token": SECRET}) == ""
    assert registryhooks.verify(SECRET, {"authorization": "Bearer nope"}) != ""
    assert registryhooks.verify(SECRET, {}) != ""
