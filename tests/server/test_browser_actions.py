"""Acting from the dashboard, as an operator does: a real browser on ``fleetsync server`` with scoped
tokens over a real worker and the ``work-1`` cluster (controllers, scheduler, kwok Nodes).

Playwright drives Debian's ``chromium`` (``tests/support/browser.py``), logged in with HTTP
Basic as a browser's prompt would be (the token as the password). No beat runs: the unit
stays never synced until the operator clicks Sync on its page, then the page, refreshing
itself, goes Progressing (the Deployment waits ``minReadySeconds``) and Ready. A read-only
token sees no button and is refused by the API; a page of another origin cannot post; the
operator suspends and resumes the unit from its page. Every action is in the unit's
history with the token's name.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from shared.state.rollout_store import Holds
from tests.conftest import new_redis_db
from tests.support.browser import artifacts_dir, chromium
from tests.support.serverproc import ServerProcess
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

TIMEOUT = 120.0
CLUSTER = "work-1"
OPERATOR, VIEWER = "p" * 40, "w" * 40


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return artifacts_dir(request, tmp_path_factory, "server-actions", "dashboard actions")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


def deployment(namespace: str) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 2, "minReadySeconds": 8, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}})


@pytest.fixture(scope="module")
def served(workload_fleet, redis_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Stack, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("server-actions")
    # interval 60 s: with no beat, a unit is shown stale (Unknown) after 3 intervals
    stack = Stack(tmp, new_redis_db(redis_url), dict(workload_fleet.clusters), interval=60)
    stack.repo.write("app/deployment.yaml", deployment(stack.namespace))
    stack.repo.commit("web: minReadySeconds 8")
    stack.repo.push()
    stack.write_spec([CLUSTER], wait="90s")
    (tmp / "tokens").write_text(f"operator scopes=read,sync,hold {OPERATOR}\n"
                                f"viewer scopes=read {VIEWER}\n")
    server = ServerProcess(stack.env(FLEETSYNC_SERVER_TOKEN_FILE=str(tmp / "tokens"),
                                     FLEETSYNC_SERVER_REFRESH="0.5"), tmp / "server.log")
    try:
        stack.start_worker("w1")
        server.wait_ready()
        yield stack, server
    finally:
        server.stop()
        stack.stop()


def logged_in(browser: Any, token: str) -> Any:
    context = browser.new_context(viewport={"width": 1366, "height": 768},
                                  http_credentials={"username": "me", "password": token})
    context.set_default_timeout(TIMEOUT * 1000)
    return context


@pytest.fixture()
def operator(browser: Any) -> Iterator[Any]:
    context = logged_in(browser, OPERATOR)
    yield context.new_page()
    context.close()


@pytest.fixture()
def viewer(browser: Any) -> Iterator[Any]:
    context = logged_in(browser, VIEWER)
    yield context.new_page()
    context.close()


def unit_page(stack: Stack, server: ServerProcess) -> str:
    return f"{server.base}/units/{CLUSTER}/{stack.app}"


WATCH_PHASES = """() => {
  window.seen = [document.querySelector('#unit-phase').dataset.phase];
  document.getElementById('live').addEventListener('fleetsync:refreshed', () => {
    const now = document.querySelector('#unit-phase').dataset.phase;
    if (window.seen[window.seen.length - 1] !== now) window.seen.push(now);
  });
}"""


def test_an_operator_clicks_sync_and_watches_the_unit_become_ready(
        served: tuple[Stack, ServerProcess], operator: Any, artifacts: Path) -> None:
    stack, server = served
    page = operator
    page.goto(unit_page(stack, server))
    assert page.inner_text("#caller") == "operator"
    assert page.get_attribute("#unit-phase", "data-phase") == "Unknown"      # never synced
    page.evaluate(WATCH_PHASES)
    page.screenshot(path=str(artifacts / "01-unit-never-synced.png"), full_page=True)
    page.click('#unit-actions button[data-action="sync"]')
    page.wait_for_selector('#action-result[data-status="202"]')
    assert page.inner_text("#action-result") == "Sync: done"
    page.wait_for_selector('#unit-phase[data-phase="Progressing"]')
    page.screenshot(path=str(artifacts / "02-unit-progressing.png"), full_page=True)
    page.wait_for_selector('#unit-phase[data-phase="Ready"]')
    seen = page.evaluate("() => window.seen")
    assert seen[-2:] == ["Progressing", "Ready"], seen
    assert stack.ready_at(CLUSTER, stack.repo.head())
    history = page.inner_text("#history")
    assert "sync by operator (dashboard)" in history
    page.screenshot(path=str(artifacts / "03-unit-ready.png"), full_page=True)


def test_a_read_only_token_sees_no_buttons_and_is_refused(
        served: tuple[Stack, ServerProcess], viewer: Any) -> None:
    stack, server = served
    page = viewer
    for url in (f"{server.base}/", unit_page(stack, server)):
        page.goto(url)
        page.wait_for_selector("#live")
        assert page.locator("form.action").count() == 0, url
    answer = page.evaluate("""async (app) => {
      const csrf = document.querySelector('meta[name="fleetsync-csrf"]').content;
      const resp = await fetch('/api/v1/sync', {method: 'POST', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json', 'X-Fleetsync-CSRF': csrf},
        body: JSON.stringify({app: app, cluster: null})});
      return [resp.status, (await resp.json()).error];
    }""", stack.app)
    assert answer == [403, "token viewer lacks the scope 'sync' (it has: read)"]


EVIL = """<!doctype html><html><body>
<form id="f" method="post" enctype="text/plain" action="{target}/api/v1/suspend">
<input name='{{"app": "{app}", "x": "' value='"}}'></form>
<p id="fetch">waiting</p>
<script>
fetch("{target}/api/v1/suspend", {{method: "POST", credentials: "include", mode: "cors",
  headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({{app: "{app}"}})}})
  .then(r => {{ document.getElementById("fetch").textContent = "answered " + r.status; }})
  .catch(e => {{ document.getElementById("fetch").textContent = "refused"; }});
</script></body></html>"""


@pytest.fixture()
def evil_site(served: tuple[Stack, ServerProcess]) -> Iterator[str]:
    stack, server = served
    page = EVIL.format(target=server.base, app=stack.app).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}/"
    finally:
        site.shutdown()
        site.server_close()


def test_a_page_of_another_origin_cannot_post(served: tuple[Stack, ServerProcess],
                                              operator: Any, evil_site: str) -> None:
    stack, server = served
    page = operator
    page.goto(unit_page(stack, server))                  # logged in, with a session
    page.goto(evil_site)
    page.wait_for_function("() => document.getElementById('fetch').textContent !== 'waiting'")
    assert page.inner_text("#fetch") == "refused"        # the preflight was refused
    with page.expect_navigation():
        page.evaluate("() => document.getElementById('f').submit()")
    assert "another origin" in page.inner_text("body")   # the form's POST: 403
    holds = Holds(redis.Redis.from_url(stack.redis_url, decode_responses=True))
    assert holds.suspensions(stack.app) == []


DONE = """(label) => {
  const out = document.getElementById('action-result');
  return out.textContent === label + ': done' && out.dataset.status === '200';
}"""


def test_suspend_and_resume_from_the_page(served: tuple[Stack, ServerProcess], operator: Any,
                                          artifacts: Path) -> None:
    stack, server = served
    page = operator
    holds = Holds(redis.Redis.from_url(stack.redis_url, decode_responses=True))
    page.goto(unit_page(stack, server))
    page.click('#unit-actions button[data-action="suspend"]')
    page.wait_for_function(DONE, arg="Suspend")
    found = holds.suspension(stack.app, CLUSTER)
    assert found is not None and found.by == "operator"
    page.wait_for_selector('#unit-actions button[data-action="resume"]')   # refreshed
    assert "suspend by operator (dashboard)" in page.inner_text("#history")
    page.screenshot(path=str(artifacts / "04-unit-suspended.png"), full_page=True)
    page.click('#unit-actions button[data-action="resume"]')
    page.wait_for_function(DONE, arg="Resume")
    assert holds.suspension(stack.app, CLUSTER) is None
    page.wait_for_selector('#unit-actions button[data-action="suspend"]')
    assert "resume by operator (dashboard)" in page.inner_text("#history")
    stack.wait("Ready after resume", lambda: stack.ready_at(CLUSTER, stack.repo.head()),
               timeout=TIMEOUT)
