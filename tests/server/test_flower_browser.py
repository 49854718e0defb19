"""Flower as an operator reads it: a real browser on a real Flower over real workers.

Playwright drives Debian's ``chromium`` (headless) against ``fleetsync flower``
while a worker and beat reconcile one application on the two local control
planes. What an operator must be able to do from the Tasks page alone:

- tell every row's application and cluster (``app@dev-1 rev 81a51c7 (beat)``)
  and read a result top-down (phase, then the one-line summary);
- find one cluster's tasks with Flower's search (``args:dev-1``);
- after a bad commit, see the failed task, its unit and the reason
  (``state:FAILURE``), and get there from ``fleetsync history`` and
  ``fleetsync status -o wide`` (``FLEETSYNC_FLOWER_URL``);
- restart Flower (here with basic auth behind a URL prefix, as behind an
  ingress) and still find the earlier tasks.

Screenshots are saved under the directory this module prints
(``$FLEETSYNC_TEST_ARTIFACTS`` when set).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.support.browser import artifacts_dir, chromium
from tests.conftest import ROOT, new_redis_db
from tests.support.stack import Stack, free_port

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

TIMEOUT = 90.0           # a busy 2-core CI machine: generous, but every wait ends on a condition

ROWS_JS = """() => {
  const cols = [...document.querySelectorAll('#tasks-table thead th')].map(th => th.dataset.column);
  return [...document.querySelectorAll('#tasks-table tbody tr')]
    .filter(tr => tr.cells.length === cols.length)
    .map(tr => Object.assign({id: tr.id},
                             Object.fromEntries(cols.map((c, i) => [c, tr.cells[i].innerText.trim()]))));
}"""


# -- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return artifacts_dir(request, tmp_path_factory, "flower", "Flower")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


class Flower:
    """``fleetsync flower`` as a process of the stack, started and stopped like an operator's."""

    def __init__(self, stack: Stack, db: Path) -> None:
        self.stack, self.db = stack, db
        self.proc: subprocess.Popen | None = None
        self.base = ""

    def start(self, *extra: str, prefix: str = "", **env: str) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}{prefix}"
        self.proc = self.stack._spawn("flower", ["flower", "--port", str(port), *extra],
                                      FLEETSYNC_FLOWER_DB=str(self.db), **env)
        self.stack.wait("Flower answers", self._healthy, timeout=TIMEOUT)

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "Flower exited"
        try:
            with urllib.request.urlopen(f"{self.base}/healthcheck", timeout=5) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.stack.kill(self.proc, signal.SIGTERM)      # Flower saves its state as it stops
            self.proc = None


@pytest.fixture(scope="module")
def fleet(dev_fleet, redis_url: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Stack, Flower]]:
    """Flower first (it sees every task from the first one on), then a worker and beat."""
    tmp = tmp_path_factory.mktemp("flower")
    stack = Stack(tmp, new_redis_db(redis_url), dev_fleet.clusters)
    stack.write_spec(["dev-1", "dev-2"])
    flower = Flower(stack, tmp / "state" / "flower.db")
    try:
        flower.start()
        stack.start_worker("w1")
        stack.start_beat()
        head = stack.repo.head()
        for cluster in ("dev-1", "dev-2"):
            stack.wait(f"{cluster} Ready", lambda c=cluster: stack.ready_at(c, head), timeout=TIMEOUT)
        yield stack, flower
    finally:
        flower.stop()
        stack.stop()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context per test (Flower keeps the table's search in local storage)."""
    context = browser.new_context(viewport={"width": 1600, "height": 900},
                                  http_credentials={"username": "ops", "password": "s3cret"})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT * 1000)
    yield tab
    context.close()


@pytest.fixture(scope="module")
def bad_commit(fleet: tuple[Stack, Flower]) -> str:
    """Invalid YAML in the application's config.yaml, committed: both units fail to render."""
    stack, _ = fleet
    stack.repo.write("app/config.yaml", "apiVersion: v1\nkind: ConfigMap\ndata: [unclosed\n")
    sha = stack.repo.commit("config.yaml: a typo")
    stack.repo.push()
    for cluster in ("dev-1", "dev-2"):
        stack.wait(f"{cluster} Failed at {sha[:8]}", lambda c=cluster: (
            stack.status(c)["phase"] == "Failed" and stack.status(c)["revision"] == sha),
            timeout=TIMEOUT)
    return sha


# -- the browser's view of the Tasks page -------------------------------------------------

def rows(tab: Any) -> list[dict[str, str]]:
    return tab.evaluate(ROWS_JS)


def redraw(tab: Any) -> None:
    """Ask the table for its rows again, as its refresh does, and wait for them."""
    tab.evaluate("() => $('#tasks-table').DataTable().draw(false)")
    tab.wait_for_selector("#tasks-table_processing", state="hidden")


def search(tab: Any, query: str) -> None:
    """Type ``query`` into the Tasks page's search box, as an operator does."""
    box = tab.locator("#tasks-table_filter input")
    box.fill(query)
    tab.wait_for_function(
        "q => $('#tasks-table').DataTable().search() === q", arg=query)
    tab.wait_for_selector("#tasks-table_processing", state="hidden")


def wait_rows(tab: Any, what: str, check: Callable[[list[dict[str, str]]], bool],
              artifacts: Path) -> list[dict[str, str]]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        found = rows(tab)
        if check(found):
            return found
        if time.monotonic() > deadline:
            tab.screenshot(path=str(artifacts / "timeout.png"), full_page=True)
            raise AssertionError(f"{what}: not seen in {TIMEOUT}s; rows: {found[:20]}")
        redraw(tab)


def open_tasks(tab: Any, base: str) -> None:
    tab.goto(f"{base}/tasks")
    tab.wait_for_selector("#tasks-table_processing", state="hidden")


RUN_TASKS = ("fleetsync.render", "fleetsync.apply")   # push mode: a run is one of them


def unit_row(row: dict[str, str], app: str, cluster: str, name: str = "") -> bool:
    return (row.get("name") in ((name,) if name else RUN_TASKS)
            and row.get("args", "").startswith(f"{app}@{cluster} rev "))


def run_row(row: dict[str, str], app: str, cluster: str) -> bool:
    """A run's row: its task succeeded and its result is the run's (phase first)."""
    return (unit_row(row, app, cluster) and row["state"] == "SUCCESS"
            and (row.get("result") or "").startswith("{'phase': "))


def cli(stack: Stack, *argv: str, **env: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", *argv], cwd=ROOT,
                          env=stack.env(**env), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# -- scenarios ------------------------------------------------------------------------------

def test_rows_name_the_application_and_cluster_and_results_read_top_down(
        fleet: tuple[Stack, Flower], page: Any, artifacts: Path) -> None:
    stack, flower = fleet
    open_tasks(page, flower.base)
    columns = page.eval_on_selector_all("#tasks-table thead th",
                                        "ths => ths.map(t => t.dataset.column)")
    assert {"name", "state", "args", "result", "exception"} <= set(columns), columns

    found = wait_rows(page, "a successful apply on each cluster", lambda rs: all(
        any(run_row(r, stack.app, c) for r in rs) for c in ("dev-1", "dev-2")), artifacts)
    page.screenshot(path=str(artifacts / "01-tasks.png"))
    applied = [r for r in found if run_row(r, stack.app, "dev-1")]
    assert applied[0]["result"].startswith("{'phase': 'Ready', 'summary': '"), applied[0]
    assert any(r["args"] == "cluster dev-1 (beat)" for r in found
               if r["name"] == "fleetsync.reconcile_cluster"), found

    # the task's own page: the arguments say the unit, the result starts with phase and summary
    page.goto(f"{flower.base}/task/{applied[0]['id']}")
    code = page.locator(".detail-row-code code").all_inner_texts()
    assert code[0].startswith(f"{stack.app}@dev-1 rev "), code
    assert code[2].startswith("{'phase': 'Ready', 'summary': '"), code
    page.screenshot(path=str(artifacts / "02-task-ready.png"), full_page=True)


def test_no_field_of_a_ready_result_contradicts_its_phase(fleet: tuple[Stack, Flower],
                                                          page: Any, artifacts: Path) -> None:
    stack, flower = fleet
    open_tasks(page, flower.base)
    found = wait_rows(page, "a successful apply on dev-1", lambda rs: any(
        run_row(r, stack.app, "dev-1") for r in rs), artifacts)
    result = next(r["result"] for r in found if run_row(r, stack.app, "dev-1"))
    assert result.startswith("{'phase': 'Ready'") and "'healthy': False" not in result, result


def test_search_by_cluster_finds_only_that_clusters_tasks(
        fleet: tuple[Stack, Flower], page: Any, artifacts: Path) -> None:
    stack, flower = fleet
    open_tasks(page, flower.base)
    wait_rows(page, "tasks of both clusters", lambda rs: any("dev-2" in r["args"] for r in rs)
              and any("dev-1" in r["args"] for r in rs), artifacts)
    search(page, "args:dev-1")
    found = wait_rows(page, "dev-1's tasks only", lambda rs: bool(rs) and all(
        "dev-1" in r["args"] for r in rs) and any(unit_row(r, stack.app, "dev-1") for r in rs),
        artifacts)
    assert not [r for r in found if "dev-2" in r["args"]]
    assert "filtered from" in page.inner_text("#tasks-table_info")
    page.screenshot(path=str(artifacts / "03-search-dev-1.png"))


def failed_render_of_dev_1(page: Any, stack: Stack, flower: Flower,
                           artifacts: Path) -> tuple[list[dict], dict]:
    """The rows Flower lists for ``state:FAILURE``, and dev-1's failed render among them."""
    open_tasks(page, flower.base)
    search(page, "state:FAILURE")
    found = wait_rows(page, "the failed render of dev-1", lambda rs: any(
        unit_row(r, stack.app, "dev-1", "fleetsync.render") for r in rs), artifacts)
    return found, next(r for r in found if unit_row(r, stack.app, "dev-1", "fleetsync.render"))


def test_a_bad_commit_shows_the_failed_unit_and_reason(
        fleet: tuple[Stack, Flower], bad_commit: str, page: Any, artifacts: Path) -> None:
    stack, flower = fleet
    found, failed = failed_render_of_dev_1(page, stack, flower, artifacts)
    assert all(r["state"] == "FAILURE" for r in found), found
    assert failed["args"].startswith(f"{stack.app}@dev-1 rev {bad_commit[:7]}"), failed  # the unit
    assert failed["exception"].startswith("RenderError("), failed                        # the reason
    assert "app/config.yaml:4: while parsing a flow sequence" in failed["exception"], failed
    page.screenshot(path=str(artifacts / "04-failed.png"))

    # from fleetsync to Flower: history and status -o wide print the task's Flower page
    history = cli(stack, "history", stack.app, "--cluster", "dev-1",
                  FLEETSYNC_FLOWER_URL=flower.base + "/")
    link = f"{flower.base}/task/{failed['id']}"
    assert history.splitlines()[0].split()[-1] == "FLOWER"
    assert history.splitlines()[1].endswith(link), history
    wide = cli(stack, "status", "-o", "wide", "--app", stack.app, FLEETSYNC_FLOWER_URL=flower.base)
    assert link in wide, wide
    page.goto(link)
    assert page.locator(".badge").first.inner_text() == "FAILURE"
    code = page.locator(".detail-row-code code").all_inner_texts()
    assert code[0].startswith(f"{stack.app}@dev-1 rev {bad_commit[:7]}"), code
    assert "app/config.yaml:4" in page.inner_text("#task-page")
    page.screenshot(path=str(artifacts / "05-failed-task.png"), full_page=True)


def test_the_failed_tasks_exception_alone_names_the_unit(
        fleet: tuple[Stack, Flower], bad_commit: str, page: Any, artifacts: Path) -> None:
    """Flower's exception (and any alert that reads only it) says which unit failed."""
    stack, flower = fleet
    _, failed = failed_render_of_dev_1(page, stack, flower, artifacts)
    exception = failed["exception"]
    assert stack.app in exception and "dev-1" in exception and bad_commit[:12] in exception, failed


def test_restarted_flower_keeps_earlier_tasks(fleet: tuple[Stack, Flower], bad_commit: str,
                                              page: Any, artifacts: Path) -> None:
    """Same state file; now as behind an ingress: basic auth and a URL prefix."""
    stack, flower = fleet
    open_tasks(page, flower.base)
    search(page, "state:FAILURE")
    before = wait_rows(page, "the failed renders", lambda rs: sum(
        unit_row(r, stack.app, c, "fleetsync.render") for r in rs for c in ("dev-1", "dev-2")) >= 2,
        artifacts)
    earlier = {r["id"] for r in before if r["name"] == "fleetsync.render"}

    flower.stop()
    assert list(flower.db.parent.glob(flower.db.name + "*")), "Flower saved no state file"
    flower.start("--url_prefix=ops/flower", prefix="/ops/flower", FLOWER_BASIC_AUTH="ops:s3cret")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{flower.base}/tasks", timeout=10)
    assert refused.value.code == 401

    open_tasks(page, flower.base)          # the page's context sends the credentials
    search(page, "state:FAILURE")
    after = wait_rows(page, "the earlier failed renders", lambda rs: earlier <= {r["id"] for r in rs},
                      artifacts)
    assert all(r["state"] == "FAILURE" for r in after)
    page.screenshot(path=str(artifacts / "06-after-restart.png"))
