"""The images page in chromium: each policy's latest tag and why, its marker in Git, the
clusters at each tag, an error named, and a new scan shown by the page's own refresh. A real
server process on the real Redis; the workers' records are written through
``shared.state.images`` and ``shared.state.imageupdates``, as the workers write them."""

from __future__ import annotations

import os
import time
from typing import Any, Iterator

import pytest
import redis

from shared.state import imageupdates, images
from shared.state.status import StatusStore, UnitStatus
from tests.conftest import new_redis_db
from tests.support.browser import artifacts_dir, chromium
from tests.support.serverproc import ServerProcess
from workers.images.scan import ScanResult

pytestmark = [pytest.mark.slow]
OLD, NEW = "a" * 40, "b" * 40
SPEC = """images:
  - {name: podinfo, repository: registry.example.com/apps/podinfo, policy: {semver: "^1"}}
  - {name: gone, repository: registry.example.com/apps/gone, policy: {semver: "^1"}}
sources:
  - name: git
    url: https://git.example.com/org/gitops.git
    branch: main
    imageUpdates: {author: {name: bot, email: bot@example.com}}
clusters:
  - {name: prod, kubeconfig: /nonexistent}
  - {name: stage, kubeconfig: /nonexistent}
applications:
  - {name: web, source: git, path: apps/web, clusters: {names: [prod, stage]}}
"""


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, str]]:
    tmp = tmp_path_factory.mktemp("server-images")
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


def _marker(value: str) -> list[dict[str, Any]]:
    return [{"file": "apps/web/deploy.yaml", "line": 12, "policy": "podinfo", "part": "image",
             "value": f"registry.example.com/apps/podinfo:{value}"}]


def _scan(tag: str) -> ScanResult:
    return ScanResult(policy="podinfo", repository="registry.example.com/apps/podinfo", tag=tag,
                      digest="sha256:" + "c" * 64, why=f"{tag} by semver ^1", at=time.time(),
                      considered=3, ignored=0)


def test_latest_git_clusters_and_errors_then_a_new_scan(served, page: Any, request: Any,
                                                        tmp_path_factory: Any) -> None:
    server, url = served
    shots = artifacts_dir(request, tmp_path_factory, "images", "images page")
    r = redis.Redis.from_url(url, decode_responses=True)
    store = StatusStore(r)
    images.record(r, _scan("1.1.0"))  # type: ignore[arg-type]
    images.record_error(r, "gone", "image policy gone: cannot reach the registry", time.time())
    store.set_source_revision("git", NEW, time.time())
    imageupdates.record_markers(r, "git", OLD, _marker("1.0.0"))
    imageupdates.record_markers(r, "git", NEW, _marker("1.1.0"))
    imageupdates.record_pass(r, "git", {"source": "git", "at": time.time(), "commit": NEW,
                                        "subject": "Update images", "problems": [],
                                        "changes": [{"file": "apps/web/deploy.yaml",
                                                     "line": 12, "policy": "podinfo",
                                                     "old": "1.0.0", "new": "1.1.0"}],
                                        "left_out": ["gone: cannot reach the registry"]})
    store.set_status(UnitStatus("web", "stage", phase="Ready", revision=NEW))
    store.set_status(UnitStatus("web", "prod", phase="Ready", revision=OLD))

    page.goto(f"{server.base}/")
    page.click("nav >> text=Images")
    row = page.locator('#images tr[data-policy="podinfo"]')
    assert row.locator("td.latest").inner_text() == "1.1.0"
    assert "1.1.0 by semver ^1" in row.locator("td.why").inner_text()
    assert "apps/web/deploy.yaml:12" in row.locator("td.git").inner_text()
    assert "stage" in row.locator('td.clusters div[data-tag="1.1.0"]').inner_text()
    assert "prod" in row.locator('td.clusters div[data-tag="1.0.0"]').inner_text()
    gone = page.locator('#images tr[data-policy="gone"] td.why').inner_text()
    assert "error" in gone and "cannot reach the registry" in gone
    source = page.locator('#image-sources tr[data-source="git"]').inner_text()
    assert "Update images" in source and "left out: gone" in source
    page.screenshot(path=str(shots / "images.png"), full_page=True)

    images.record(r, _scan("1.2.0"))  # type: ignore[arg-type]
    page.wait_for_selector('#images tr[data-policy="podinfo"] td.latest:text-is("1.2.0")')
