"""``fleetsync server``'s rollout and suspension endpoints, as a real process on the real Redis
with a token (no clusters: statuses are written as workers would; what the server enqueues
is read back from the broker's queue)."""

from __future__ import annotations

import json
import os
from typing import Iterator

import pytest
import redis
import requests

from shared.rollout import Record
from shared.state.rollout_store import Holds
from shared.state.status import StatusStore, UnitStatus, now_iso
from tests.support.serverproc import ServerProcess

TOKEN = "h" * 40
A, B = "a" * 40, "b" * 40
SPEC = """sources:
  - {name: git, url: https://git.example.com/org/gitops.git, branch: main}
clusters:
  - {name: dev, kubeconfig: /nonexistent, labels: {env: development}}
  - {name: prod, kubeconfig: /nonexistent, labels: {env: production}}
applications:
  - name: web
    source: git
    path: apps/web
    clusters: {names: [dev, prod]}
    rollout:
      waves:
        - clusters: {names: [dev]}
        - clusters: {matchLabels: {env: production}}
  - name: api
    source: git
    path: apps/api
    clusters: {names: [dev]}
"""


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, str]]:
    from tests.conftest import new_redis_db

    tmp = tmp_path_factory.mktemp("server-holds")
    url = new_redis_db(redis_url)
    (tmp / "fleet.yaml").write_text(SPEC)
    env = {**os.environ, "FLEETSYNC_REDIS_URL": url, "FLEETSYNC_FLEET": str(tmp / "fleet.yaml"),
           "FLEETSYNC_SERVER_TOKEN_ENV": "TEST_SERVER_TOKEN", "TEST_SERVER_TOKEN": TOKEN}
    server = ServerProcess(env, tmp / "server.log")
    try:
        server.wait_ready()
        yield server, url
    finally:
        server.stop()


def post(server: ServerProcess, path: str, body: dict, token: str = TOKEN) -> requests.Response:
    return requests.post(f"{server.base}{path}", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {token}"})


def test_rollout_actions_need_the_token_and_enqueue_a_sync(served) -> None:
    server, url = served
    client = redis.Redis.from_url(url, decode_responses=True)
    store = StatusStore(client)
    store.set_status(UnitStatus("web", "dev", phase="Ready", revision=B, message="", last_synced_at=now_iso()))
    store.set_status(UnitStatus("web", "prod", phase="Ready", revision=A, message="", last_synced_at=now_iso()))
    Holds(client).change("web", lambda _: Record(target=B, stable=A, wave=1, admitted=("dev",)))
    assert post(server, "/api/v1/rollouts/web/pause", {}, token="wrong").status_code == 401
    assert Holds(client).record("web").paused == ""
    paused = post(server, "/api/v1/rollouts/web/pause", {"by": "carol"})
    assert paused.status_code == 200 and paused.json()["state"] == "Paused"
    assert paused.json()["paused"].startswith("by TEST_SERVER_TOKEN at ")   # the token's name
    before = client.llen("reconcile")
    promoted = post(server, "/api/v1/rollouts/web/promote", {"wave": 2, "by": "carol"})
    assert promoted.status_code == 200, promoted.text
    assert client.llen("reconcile") == before + 1
    message = json.loads(client.lindex("reconcile", 0))
    assert message["headers"]["task"] == "fleetsync.sync"
    assert Holds(client).record("web").promoted == 1
    too_far = post(server, "/api/v1/rollouts/web/promote", {"wave": 5})
    assert too_far.status_code == 409 and "there is no wave 5" in too_far.json()["error"]
    none = post(server, "/api/v1/rollouts/api/abort", {})
    assert none.status_code == 404 and "has no rollout" in none.json()["error"]
    got = requests.get(f"{server.base}/api/v1/rollouts/web", timeout=10,
                       headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [c["allowed"] for w in got["waves"] for c in w["clusters"]] == [B, A]
    assert any("promoted by TEST_SERVER_TOKEN" in e["message"] for e in got["events"])
    promotes = [json.loads(line) for line in server.log.read_text().splitlines()
                if line.startswith("{") and '"rollout promote"' in line]
    assert [(a["event"], a["who"], a["units"], a["wave"], a["via"]) for a in promotes] == [
        ("audit", "TEST_SERVER_TOKEN", ["dev/web", "prod/web"], 2, "api")]
    assert StatusStore(client).history("web", "prod")[0]["message"] == \
        "rollout promote by TEST_SERVER_TOKEN (api)"


def test_suspend_and_resume_are_recorded_with_who(served) -> None:
    server, url = served
    held = post(server, "/api/v1/suspend", {"app": "api", "cluster": "dev", "by": "dave"})
    assert held.status_code == 200, held.text
    found = Holds(redis.Redis.from_url(url, decode_responses=True)).suspension("api", "dev")
    assert found is not None and found.by == "TEST_SERVER_TOKEN"     # not the body's "by"
    assert post(server, "/api/v1/suspend", {"app": "api", "cluster": "prod"}).status_code == 404
    lifted = post(server, "/api/v1/resume", {"app": "api", "cluster": "dev"})
    assert lifted.status_code == 200 and lifted.json()["lifted"][0]["by"] == "TEST_SERVER_TOKEN"
    again = post(server, "/api/v1/resume", {"app": "api", "cluster": "dev"})
    assert again.status_code == 409 and "is not suspended" in again.json()["error"]
