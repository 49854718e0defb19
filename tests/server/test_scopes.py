"""``fleetsync server`` with scoped tokens, CSRF and the audit line, as a real process on the real
Redis (no clusters: what the server enqueues is read back from the broker's queue, what it
audits from its own log and the units' history)."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Iterator

import pytest
import redis
import requests

from shared.state.status import StatusStore
from tests.support.broker import _call
from tests.support.serverproc import ServerProcess

OPS, SYNCER, VIEWER = "o" * 40, "s" * 40, "v" * 40
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
windows:                            # open at any time: from every 1st, for 31 days
  - {name: freeze, kind: deny, schedule: "0 0 1 * *", duration: 31d, timeZone: UTC,
     clusters: {names: [prod]}, manualSync: true}
"""
POSTS = [("/api/v1/sync", {"app": "web"}), ("/api/v1/suspend", {"app": "web"}),
         ("/api/v1/resume", {"app": "web"})] + \
        [(f"/api/v1/rollouts/web/{verb}", {}) for verb in ("pause", "resume", "promote", "abort")]


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, str]]:
    from tests.conftest import new_redis_db

    tmp = tmp_path_factory.mktemp("server-scopes")
    url = new_redis_db(redis_url)
    (tmp / "fleet.yaml").write_text(SPEC)
    (tmp / "tokens").write_text(f"# who may do what\nops scopes=read,sync,hold,rollout {OPS}\n"
                                f"syncer scopes=read,sync apps=web {SYNCER}\n"
                                f"viewer scopes=read {VIEWER}\n")
    env = {**os.environ, "FLEETSYNC_REDIS_URL": url, "FLEETSYNC_FLEET": str(tmp / "fleet.yaml"),
           "FLEETSYNC_SERVER_TOKEN_FILE": str(tmp / "tokens"), "FLEETSYNC_LOG_LEVEL": "INFO"}
    server = ServerProcess(env, tmp / "server.log")
    try:
        server.wait_ready()
        yield server, url
    finally:
        server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{token}".encode()).decode()}


def queued(url: str) -> list[tuple[str, list, dict]]:
    client = redis.Redis.from_url(url, decode_responses=True)
    return [_call(json.loads(raw)) for raw in client.lrange("reconcile", 0, -1)]


def audits(server: ServerProcess) -> list[dict]:
    lines = [json.loads(line) for line in server.log.read_text().splitlines()
             if line.startswith("{")]
    return [line for line in lines if line.get("event") == "audit"]


def test_every_call_needs_a_token_holding_its_scope(served) -> None:
    server, url = served
    assert requests.get(f"{server.base}/api/v1/units", timeout=10).status_code == 401
    assert requests.post(f"{server.base}/api/v1/sync", json={"app": "web"},
                         timeout=10).status_code == 401
    assert requests.get(f"{server.base}/api/v1/units", headers=bearer(VIEWER),
                        timeout=10).status_code == 200
    before = len(queued(url))
    for path, body in POSTS:
        refused = requests.post(f"{server.base}{path}", json=body, headers=bearer(VIEWER),
                                timeout=10)
        assert refused.status_code == 403, (path, refused.text)
        assert "token viewer lacks the scope" in refused.json()["error"]
    hold = requests.post(f"{server.base}/api/v1/suspend", json={"app": "web"},
                         headers=bearer(SYNCER), timeout=10)
    assert hold.status_code == 403 and "lacks the scope 'hold'" in hold.json()["error"]
    elsewhere = requests.post(f"{server.base}/api/v1/sync", json={"app": "api"},
                              headers=bearer(SYNCER), timeout=10)
    assert elsewhere.status_code == 403
    assert "may not act on application 'api'" in elsewhere.json()["error"]
    assert len(queued(url)) == before                    # nothing refused was enqueued
    done = requests.post(f"{server.base}/api/v1/sync", json={"app": "web", "cluster": "dev"},
                         headers=bearer(SYNCER), timeout=10)
    assert done.status_code == 202, done.text
    assert queued(url)[0] == ("fleetsync.sync", ["web", "dev"], {"trigger": "api"})


def test_a_sync_with_a_reason_sends_it_with_who_and_is_audited(served) -> None:
    server, url = served
    done = requests.post(f"{server.base}/api/v1/sync", headers=bearer(SYNCER), timeout=10,
                         json={"app": "web", "cluster": "prod", "reason": "  hotfix INC-42 ",
                               "by": "someone else"})
    assert done.status_code == 202, done.text
    assert queued(url)[0] == ("fleetsync.sync", ["web", "prod"],
                              {"trigger": "api", "reason": "hotfix INC-42", "by": "syncer"})
    found = [a for a in audits(server) if a.get("why") == "hotfix INC-42"]
    assert len(found) == 1, audits(server)
    assert {k: found[0][k] for k in ("who", "what", "units", "via", "task_id")} == {
        "who": "syncer", "what": "sync", "units": ["prod/web"], "via": "api",
        "task_id": done.json()["id"]}
    history = StatusStore(redis.Redis.from_url(url, decode_responses=True)).history("web", "prod")
    assert history[0]["result"] == "Operator" and history[0]["by"] == "syncer"
    assert history[0]["message"] == "sync by syncer (api): hotfix INC-42"
    too_long = requests.post(f"{server.base}/api/v1/sync", headers=bearer(SYNCER), timeout=10,
                             json={"app": "web", "reason": "x" * 501})
    assert too_long.status_code == 400
    log = server.log.read_text()
    assert not any(secret in log for secret in (OPS, SYNCER, VIEWER))


def test_a_browsers_post_needs_the_pages_csrf_token(served) -> None:
    server, url = served
    session = requests.Session()
    page = session.get(f"{server.base}/units/dev/api", headers=basic(OPS), timeout=10)
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert "fleetsync_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie                        # plain http here
    token = re.search(r'<meta name="fleetsync-csrf" content="([0-9a-f]{64})">', page.text)
    assert token is not None
    body = {"app": "api", "cluster": "dev"}
    for headers in (basic(OPS), {**basic(OPS), "X-Fleetsync-CSRF": "0" * 64}):
        missing = session.post(f"{server.base}/api/v1/suspend", json=body, headers=headers,
                               timeout=10)
        assert missing.status_code == 403 and "CSRF" in missing.json()["error"]
    without_cookie = requests.post(f"{server.base}/api/v1/suspend", json=body, timeout=10,
                                   headers={**basic(OPS), "X-Fleetsync-CSRF": token[1]})
    assert without_cookie.status_code == 403
    forged = session.post(f"{server.base}/api/v1/suspend", json=body, timeout=10, headers={
        **basic(OPS), "X-Fleetsync-CSRF": token[1], "Origin": f"http://127.0.0.1:{server.port + 1}"})
    assert forged.status_code == 403 and "another origin" in forged.json()["error"]
    other = session.post(f"{server.base}/api/v1/sync", json={"app": "web"}, timeout=10,
                         headers={**basic(SYNCER), "X-Fleetsync-CSRF": token[1]})
    assert other.status_code == 403 and "CSRF" in other.json()["error"]   # ops's, not syncer's
    assert StatusStore(redis.Redis.from_url(url, decode_responses=True)).history("api", "dev") == []
    done = session.post(f"{server.base}/api/v1/suspend", json=body, timeout=10, headers={
        **basic(OPS), "X-Fleetsync-CSRF": token[1], "Origin": server.base})
    assert done.status_code == 200, done.text
    found = [a for a in audits(server) if a.get("what") == "suspend"]
    assert [(a["who"], a["via"], a["units"]) for a in found] == [("ops", "dashboard", ["dev/api"])]
    resumed = session.post(f"{server.base}/api/v1/resume", json=body, timeout=10, headers={
        **basic(OPS), "X-Fleetsync-CSRF": token[1]})
    assert resumed.status_code == 200 and resumed.json()["resumed_by"] == "ops"


def test_pages_show_only_the_buttons_of_the_token_and_the_window_band(served) -> None:
    server, _ = served

    def page(path: str, token: str) -> str:
        answer = requests.get(f"{server.base}{path}", headers=basic(token), timeout=10)
        assert answer.status_code == 200
        return answer.text

    assert 'class="action"' not in page("/", VIEWER) + page("/units/prod/web", VIEWER)
    syncer = page("/", SYNCER)
    assert 'data-app="web"><button type="submit" data-action="sync">' in syncer
    assert 'data-app="api"><button' not in syncer and 'data-action="suspend"' not in syncer
    ops = page("/", OPS)
    for action in ("sync", "suspend", "resume", "rollout pause", "rollout promote",
                   "rollout abort"):
        assert f'data-action="{action}"' in ops
    band = re.search(r'<tr data-cluster="prod">(.*?)</tr>', ops, re.S)
    assert band is not None and 'data-window="freeze" data-open="true"' in band[1]
    assert "(deny): open, closes" in band[1] and " UTC" in band[1]
    assert '<tr data-cluster="dev">' not in ops          # no window selects dev's units
    held = page("/units/prod/web", OPS)
    assert 'id="unit-held"' in held and "held by window freeze" in held
    assert 'data-action="sync through window"' in held and 'name="reason"' in held
    assert 'data-action="sync"' not in held
    free = page("/units/dev/web", SYNCER)
    assert 'data-action="sync"' in free and 'name="reason"' not in free
    assert 'data-action="suspend"' not in free
