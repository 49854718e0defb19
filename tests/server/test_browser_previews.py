"""The previews pages in chromium: the list shows a preview, its page shows the tables per
application and the collapsed per-cluster diffs, and a running preview's page turns to done by
its own refresh (no reload), then stops refreshing. A real server process on the real Redis; the
workers' part (filling the record) is played through ``shared.state.previews``."""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest
import redis

from shared.state import previews
from tests.conftest import new_redis_db
from tests.support.browser import artifacts_dir, chromium
from tests.support.serverproc import ServerProcess

pytestmark = [pytest.mark.slow]

SPEC = """sources:
  - {name: git, url: https://git.example.com/org/gitops.git, branch: main}
clusters:
  - {name: prod, kubeconfig: /nonexistent}
  - {name: stage, kubeconfig: /nonexistent}
applications:
  - {name: web, source: git, path: apps/web, clusters: {names: [prod, stage]}}
"""


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, str]]:
    tmp = tmp_path_factory.mktemp("server-previews")
    url = new_redis_db(redis_url)
    (tmp / "fleet.yaml").write_text(SPEC)
    env = {**os.environ, "FLEETSYNC_REDIS_URL": url, "FLEETSYNC_FLEET": str(tmp / "fleet.yaml"),
           "FLEETSYNC_SERVER_REFRESH": "0.3"}
    server = ServerProcess(env, tmp / "server.log")
    try:
        server.wait_ready()
        yield server, url
    finally:
        server.stop()


@pytest.fixture()
def page() -> Iterator[Any]:
    for browser in chromium():
        context = browser.new_context()
        context.set_default_timeout(60_000)
        yield context.new_page()
        context.close()


def part(cluster: str, outcome: str) -> dict[str, Any]:
    objects = [{"apiVersion": "v1", "kind": "Secret", "namespace": "web", "name": "db",
                "action": "update", "fields": ["data.password"], "message": ""},
               {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "web",
                "name": "web", "action": "update", "fields": ["spec.replicas"], "message": ""}]
    return {"app": "web", "cluster": cluster, "base_revision": "b" * 40, "revision": "c" * 40,
            "outcome": outcome, "message": "", "objects": objects if outcome != "unchanged"
            else []}


def test_the_list_and_a_running_preview_that_turns_done(served, page: Any, request: Any,
                                                        tmp_path_factory: Any) -> None:
    server, url = served
    shots = artifacts_dir(request, tmp_path_factory, "previews", "previews pages")
    client = redis.Redis.from_url(url, decode_responses=True)
    meta = previews.create(client, source="git", ref="feature", base="main",
                           requested_by="api:ops")
    pid = meta["id"]
    previews.update(client, pid, revision="c" * 40)
    previews.set_total(client, pid, 2)
    previews.add_units(client, pid, [part("prod", "changed")])

    page.goto(f"{server.base}/")
    page.click("nav >> text=Previews")
    row = page.locator(f'#previews tr[data-preview="{pid}"]')
    assert row.get_attribute("data-state") == "running"
    assert "feature" in row.inner_text() and "running (1 of 2 clusters)" in row.inner_text()
    page.screenshot(path=str(shots / "previews.png"), full_page=True)
    row.locator(f'a[href="/previews/{pid}"]').click()
    page.wait_for_selector("#preview-headline[data-state=running]")
    table = page.locator('section[data-app="web"] table')
    assert table.locator("tbody tr").count() == 1
    assert table.locator('tr[data-cluster="prod"] td.outcome').inner_text() == "changed"
    assert table.locator('tr[data-cluster="prod"]').inner_text().split("\t")[2:6] == \
        ["0", "2", "0", "0"]
    details = page.locator("details.preview-diff")
    assert details.count() == 1 and not details.first.evaluate("d => d.open")
    details.first.locator("summary").click()
    assert "data.password" in details.first.inner_text()

    previews.add_units(client, pid, [part("stage", "unchanged")])
    previews.update(client, pid, state="done")
    page.wait_for_selector("#preview-headline[data-state=done]")      # refreshed, not reloaded
    assert page.inner_text("#preview-headline") == "1 app, 1 cluster changes"
    assert table.locator("tbody tr").count() == 2
    assert page.locator("details.preview-diff").first.evaluate("d => d.open")   # kept open
    page.screenshot(path=str(shots / "preview.png"), full_page=True)
    assert page.locator("#live [data-refresh=stop]").count() == 1   # fleet.js stops here

    page.goto(f"{server.base}/previews/000000000000")
    assert "no preview 000000000000" in page.inner_text("main")
