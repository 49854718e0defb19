"""The dashboard as an operator reads it: a real browser on ``fleetsync server`` over a running
local fleet (a worker, beat and Flower reconciling one application on two local control planes).

Playwright drives Debian's ``chromium`` (headless; Playwright's own browser cannot be
downloaded here). The fleet page is loaded once and left open: a bad commit turns
dev-1's cell from Ready to Failed and the revert turns it back, both through the
page's own refresh (no reload). Then the unit page shows the failed sync with its
commit, and its link opens the task in Flower. Screenshots are saved under the
directory this module prints (``$FLEETSYNC_TEST_ARTIFACTS/server`` when set).
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.browser import artifacts_dir, chromium
from tests.conftest import new_redis_db
from tests.support.serverproc import ServerProcess
from tests.support.stack import Stack, free_port

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

TIMEOUT = 90.0


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return artifacts_dir(request, tmp_path_factory, "server", "fleetsync server")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def fleet(dev_fleet, redis_url: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Stack, ServerProcess, str]]:
    tmp = tmp_path_factory.mktemp("server-browser")
    stack = Stack(tmp, new_redis_db(redis_url), dev_fleet.clusters)
    stack.write_spec(["dev-1", "dev-2"])
    flower = f"http://127.0.0.1:{free_port()}"
    server = ServerProcess(stack.env(FLEETSYNC_FLOWER_URL=flower, FLEETSYNC_SERVER_REFRESH="1"),
                           tmp / "server.log")
    try:
        stack._spawn("flower", ["flower", "--port", flower.rsplit(":", 1)[1]])
        stack.wait("Flower answers", lambda: _answers(f"{flower}/healthcheck"), timeout=TIMEOUT)
        stack.start_worker("w1")
        stack.start_beat()
        server.wait_ready()
        head = stack.repo.head()
        for cluster in ("dev-1", "dev-2"):
            stack.wait(f"{cluster} Ready", lambda c=cluster: stack.ready_at(c, head),
                       timeout=TIMEOUT)
        yield stack, server, flower
    finally:
        server.stop()
        stack.stop()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 768})   # a laptop
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT * 1000)
    yield tab
    context.close()


def cell(stack: Stack, cluster: str) -> str:
    return f'td.cell[data-unit="{cluster}/{stack.app}"]'


def test_a_unit_turns_failed_and_back_on_the_open_page_then_links_to_flower(
        fleet: tuple[Stack, ServerProcess, str], page: Any, artifacts: Path) -> None:
    stack, server, flower = fleet
    page.goto(f"{server.base}/")
    page.wait_for_selector(f'{cell(stack, "dev-1")}[data-phase="Ready"]')
    assert "Ready" in page.inner_text(cell(stack, "dev-1"))          # the word, not only colour
    assert "2/2 applied, 2 Ready" in page.inner_text(".rollouts")
    page.evaluate("() => { window.notReloaded = true; }")
    page.screenshot(path=str(artifacts / "01-fleet-ready.png"), full_page=True)

    stack.repo.write("app/config.yaml", "apiVersion: v1\nkind: ConfigMap\ndata: [unclosed\n")
    bad = stack.repo.commit("config.yaml: a typo")
    stack.repo.push()
    page.wait_for_selector(f'{cell(stack, "dev-1")}[data-phase="Failed"]')
    assert "Failed" in page.inner_text(cell(stack, "dev-1"))
    assert bad[:7] in page.inner_text(cell(stack, "dev-1"))
    assert page.evaluate("() => window.notReloaded === true")         # refreshed in place
    page.screenshot(path=str(artifacts / "02-fleet-failed.png"), full_page=True)

    # the unit page: the failed sync, its commit and author, the way to Flower
    page.click(f'{cell(stack, "dev-1")} a')
    page.wait_for_selector("#unit-phase")
    assert page.url.endswith(f"/units/dev-1/{stack.app}")
    first = page.locator("#history tbody tr").first
    assert "Failed" in first.inner_text() and "config.yaml: a typo" in first.inner_text()
    assert "Test Author" in first.inner_text()
    assert "app/config.yaml" in page.inner_text("#unit-message")
    page.screenshot(path=str(artifacts / "03-unit-failed.png"), full_page=True)
    link = first.locator("a.flower")
    href = link.get_attribute("href")
    assert href is not None and href.startswith(f"{flower}/task/")
    task_id = href.rsplit("/", 1)[1]
    deadline = time.monotonic() + TIMEOUT
    link.click()
    while "fleetsync.render" not in page.inner_text("body"):        # Flower has the event
        assert time.monotonic() < deadline, f"Flower never showed task {task_id}"
        page.reload()
    assert page.url == href and task_id in page.inner_text("body")
    page.screenshot(path=str(artifacts / "04-flower-task.png"), full_page=True)

    # the revert: back to the fleet page, which turns Ready again by itself
    revert = stack.repo.revert(bad)
    stack.repo.push()
    page.goto(f"{server.base}/?label=team=t")
    page.evaluate("() => { window.notReloaded = true; }")
    page.wait_for_selector(f'{cell(stack, "dev-1")}[data-phase="Ready"]', timeout=TIMEOUT * 1000)
    page.wait_for_function("r => document.querySelector('.rollout.current').dataset.revision === r",
                           arg=revert)
    assert page.evaluate("() => window.notReloaded === true")
    assert revert[:7] in page.inner_text(cell(stack, "dev-1"))
    page.screenshot(path=str(artifacts / "05-fleet-reverted.png"), full_page=True)
