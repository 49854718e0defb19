"""The dashboard's buttons that need no cluster, in chromium: a manual sync through a closed change
window (the unit's page says which window holds it, its Sync asks for a reason, and the reason
goes on ``fleetsync.sync`` with the token's name), and a rollout paused and promoted from the
fleet page. A real server process on the real Redis; no worker runs, so what the server sent
is read back from the broker's queue, the rollout from its record."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from shared.rollout import Record
from shared.state.rollout_store import Holds
from shared.state.status import StatusStore
from tests.conftest import new_redis_db
from tests.support.broker import _call
from tests.support.browser import chromium
from tests.support.serverproc import ServerProcess

pytestmark = [pytest.mark.slow]

TOKEN = "q" * 40
SPEC = """sources:
  - {name: git, url: https://git.example.com/org/gitops.git, branch: main}
clusters:
  - {name: prod, kubeconfig: /nonexistent, labels: {env: production}}
  - {name: dev, kubeconfig: /nonexistent, labels: {env: development}}
applications:
  - {name: web, source: git, path: apps/web, clusters: {names: [prod]}}
  - name: shop
    source: git
    path: apps/shop
    clusters: {names: [dev, prod]}
    rollout: {waves: [{clusters: {names: [dev]}}, {clusters: {names: [prod]}}]}
windows:                            # open at any time: from every 1st, for 31 days
  - {name: freeze, kind: deny, schedule: "0 0 1 * *", duration: 31d, timeZone: UTC,
     clusters: {names: [prod]}, manualSync: true}
"""


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, str]]:
    tmp = tmp_path_factory.mktemp("server-window")
    url = new_redis_db(redis_url)
    (tmp / "fleet.yaml").write_text(SPEC)
    (tmp / "tokens").write_text(f"release-manager scopes=read,sync,rollout {TOKEN}\n")
    env = {**os.environ, "FLEETSYNC_REDIS_URL": url, "FLEETSYNC_FLEET": str(tmp / "fleet.yaml"),
           "FLEETSYNC_SERVER_TOKEN_FILE": str(tmp / "tokens")}
    server = ServerProcess(env, tmp / "server.log")
    try:
        server.wait_ready()
        yield server, url
    finally:
        server.stop()


@pytest.fixture()
def page() -> Iterator[Any]:
    for browser in chromium():
        context = browser.new_context(http_credentials={"username": "me", "password": TOKEN})
        context.set_default_timeout(60_000)
        yield context.new_page()
        context.close()


def syncs(broker: Any, app: str) -> list[tuple[str, list, dict]]:
    calls = [_call(json.loads(raw)) for raw in broker.lrange("reconcile", 0, -1)]
    return [c for c in calls if c[1][0] == app]


def test_a_sync_through_a_closed_window_asks_for_a_reason(served, page: Any) -> None:
    server, url = served
    broker = redis.Redis.from_url(url, decode_responses=True)
    page.goto(f"{server.base}/units/prod/web")
    assert "held by window freeze" in page.inner_text("#unit-held")
    assert page.locator('button[data-action="sync"]').count() == 0
    page.click('button[data-action="sync through window"]')       # no reason typed:
    assert page.evaluate("() => document.querySelector('input[name=reason]')"   # the browser
                         ".validity.valueMissing")                              # asks for it
    page.fill('input[name="reason"]', "   ")                          # nor blanks
    page.click('button[data-action="sync through window"]')
    page.wait_for_function("() => document.getElementById('action-result').textContent"
                           " === 'Sync through window: give a reason'")
    assert syncs(broker, "web") == []
    page.fill('input[name="reason"]', "hotfix INC-7: the login page is down")
    page.click('button[data-action="sync through window"]')
    page.wait_for_selector('#action-result[data-status="202"]')
    (sent,) = syncs(broker, "web")
    assert sent == ("fleetsync.sync", ["web", "prod"], {
        "trigger": "api", "reason": "hotfix INC-7: the login page is down",
        "by": "release-manager"})
    page.wait_for_function("() => document.getElementById('history').innerText.includes("
                           "'sync by release-manager (dashboard): hotfix INC-7')")


DONE = """(label) => {
  const out = document.getElementById('action-result');
  return out.textContent === label + ': done' && out.dataset.status === '200';
}"""


def test_a_rollout_is_paused_and_promoted_from_the_fleet_page(served, page: Any) -> None:
    server, url = served
    holds = Holds(redis.Redis.from_url(url, decode_responses=True))
    holds.change("shop", lambda _: Record(target="b" * 40, stable="a" * 40, wave=0,
                                          admitted=("dev",)))
    page.goto(f"{server.base}/")
    row = page.locator('#app-actions tr[data-app="shop"]')
    assert row.locator("button").all_inner_texts() == [
        "Sync", "Rollout pause", "Rollout resume", "Rollout promote", "Rollout abort"]
    assert page.locator('#app-actions tr[data-app="web"] button').all_inner_texts() == ["Sync"]
    row.locator('button[data-action="rollout pause"]').click()
    page.wait_for_function(DONE, arg="Rollout pause")
    assert holds.record("shop").paused.startswith("by release-manager at ")
    page.locator('#app-actions tr[data-app="shop"] button[data-action="rollout promote"]').click()
    page.wait_for_function(DONE, arg="Rollout promote")
    assert holds.record("shop").promoted == 1
    history = StatusStore(holds.client).history("shop", "prod")
    assert history[0]["message"] == "rollout promote by release-manager (dashboard)", history
