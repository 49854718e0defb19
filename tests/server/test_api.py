"""``fleetsync server``'s JSON API, access rules and webhook refusals, as a real process on the
real Redis (no clusters: the state a worker would write is written through ``StatusStore``;
what the server enqueues is read back from the broker's queues)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis
import requests

from scheduler.server.hooks import github_signature
from shared.state.status import HistoryEntry, StatusStore, UnitStatus, now_iso
from tests.conftest import ROOT
from tests.support.serverproc import ServerProcess

SECRET = "webhook-secret-for-tests"
TOKEN = "t" * 40
A, B = "a" * 40, "b" * 40
SPEC = """sources:
  - name: git
    url: https://git.example.com/org/gitops.git
    branch: main
    webhook: {secretEnv: TEST_HOOK_SECRET}
  - name: quiet
    url: https://git.example.com/org/quiet.git
    branch: main
clusters:
  - name: prod
    kubeconfig: /nonexistent
    labels: {env: production}
  - name: stage
    kubeconfig: /nonexistent
    labels: {env: staging}
applications:
  - name: web
    source: git
    path: apps/web
    clusters: {names: [prod, stage]}
  - name: api
    source: git
    path: clusters/${cluster_name}/api
    clusters: {matchLabels: {env: production}}
"""


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, str]]:
    from tests.conftest import new_redis_db

    tmp = tmp_path_factory.mktemp("server-api")
    url = new_redis_db(redis_url)
    (tmp / "fleet.yaml").write_text(SPEC)
    env = {**_env(url, tmp), "TEST_HOOK_SECRET": SECRET,
           "FLEETSYNC_FLOWER_URL": "http://flower.example/flower"}
    server = ServerProcess(env, tmp / "server.log")
    try:
        server.wait_ready()
        _seed(url)
        yield server, url
    finally:
        server.stop()


def _env(url: str, tmp: Path) -> dict[str, str]:
    import os

    return {**os.environ, "FLEETSYNC_REDIS_URL": url, "FLEETSYNC_FLEET": str(tmp / "fleet.yaml"),
            "FLEETSYNC_LOG_LEVEL": "INFO"}


def _seed(url: str) -> None:
    store = StatusStore(redis.Redis.from_url(url, decode_responses=True))
    store.set_source_revision("git", B, time.time(), commit={
        "author": "Ada Lovelace", "author_email": "ada@example.com",
        "committed_at": "2026-01-01T10:00:00+00:00", "subject": "web: 3 replicas"},
        ref="main (default branch)")
    store.set_status(UnitStatus("web", "prod", phase="Ready", revision=B, message="1 configured", last_synced_at=now_iso(), interval=60))
    store.set_status(UnitStatus("web", "stage", phase="Degraded", revision=B, message="Deployment/web: 1/3 updated",
                                last_synced_at=now_iso(), reason="Degraded", interval=60))
    store.set_status(UnitStatus("api", "prod", phase="Ready", revision=A, message="nothing to do", last_synced_at=now_iso(),
                                interval=60))
    entry = HistoryEntry(revision=B, trigger="webhook", result="Ready", message="1 configured", started_at=now_iso(), finished_at=now_iso(), run_id="run-1",
                         task_id="task-1", changes={"configured": 1},
                         drift={"Deployment/web/web": ["spec.replicas"]}, author="Ada Lovelace",
                         author_email="ada@example.com", committed_at="2026-01-01T10:00:00+00:00",
                         subject="web: 3 replicas")
    store.add_history("web", "prod", json.loads(entry.to_json()))


def test_units_with_phase_revision_age_and_message(served) -> None:
    server, _ = served
    body = requests.get(f"{server.base}/api/v1/units", timeout=10).json()
    assert body["api"] == "v1"
    units = {u["unit"]: u for u in body["units"]}
    assert set(units) == {"prod/web", "stage/web", "prod/api"}
    assert units["stage/web"]["phase"] == "Degraded"
    assert units["stage/web"]["message"] == "Deployment/web: 1/3 updated"
    assert units["prod/web"]["revision"] == B and units["prod/web"]["age_s"] >= 0
    assert units["prod/web"]["labels"] == {"env": "production"}
    assert body["counts"] == {"Ready": 2, "Degraded": 1}
    staging = requests.get(f"{server.base}/api/v1/units", params={"label": "env=staging"},
                           timeout=10).json()
    assert [u["unit"] for u in staging["units"]] == ["stage/web"]


def test_one_units_history_names_the_commit_and_its_last_drift(served) -> None:
    server, _ = served
    body = requests.get(f"{server.base}/api/v1/units/prod/web", timeout=10).json()
    entry = body["history"][0]
    assert (entry["author"], entry["subject"]) == ("Ada Lovelace", "web: 3 replicas")
    assert entry["flower_url"] == "http://flower.example/flower/task/task-1"
    assert body["last_drift"]["drift"] == {"Deployment/web/web": ["spec.replicas"]}
    assert requests.get(f"{server.base}/api/v1/units/prod/nope", timeout=10).status_code == 404


def test_per_revision_rollup(served) -> None:
    server, _ = served
    body = requests.get(f"{server.base}/api/v1/revisions", timeout=10).json()
    current = body["revisions"][0]
    assert current["summary"] == "bbbbbbb: 2/3 applied, 1 Ready, 1 Degraded"
    assert current["units"] == {"Ready": ["prod/web"], "Degraded": ["stage/web"]}
    assert current["not_applied"] == ["prod/api"]
    assert current["commit"]["subject"] == "web: 3 replicas"
    assert current["ref"] == "main (default branch)"
    sources = requests.get(f"{server.base}/api/v1/sources", timeout=10).json()["sources"]
    assert {s["name"]: s["ref"] for s in sources}["git"] == "main (default branch)"
    one = requests.get(f"{server.base}/api/v1/revisions/aaaa", timeout=10).json()
    assert [r["summary"] for r in one["revisions"]] == ["aaaaaaa: 1/3 applied, 1 Ready"]
    assert requests.get(f"{server.base}/api/v1/revisions/cccc", timeout=10).status_code == 404


def test_sync_request_enqueues_fleetsync_sync(served) -> None:
    server, url = served
    broker = redis.Redis.from_url(url)
    before = broker.llen("reconcile")
    answer = requests.post(f"{server.base}/api/v1/sync", json={"app": "web", "cluster": "prod"},
                           timeout=10)
    assert answer.status_code == 202, answer.text
    assert answer.json()["task"] == "fleetsync.sync" and answer.json()["id"]
    assert broker.llen("reconcile") == before + 1
    message = json.loads(broker.lindex("reconcile", 0))
    assert message["headers"]["task"] == "fleetsync.sync"
    assert message["headers"]["id"] == answer.json()["id"]
    for bad, status in (({"app": "nope"}, 404), ({"app": "api", "cluster": "stage"}, 404),
                        ({"cluster": "prod"}, 400)):
        assert requests.post(f"{server.base}/api/v1/sync", json=bad,
                             timeout=10).status_code == status
    form = requests.post(f"{server.base}/api/v1/sync", data={"app": "web"}, timeout=10)
    assert form.status_code == 415          # a cross-site form cannot send JSON
    other_page = requests.post(f"{server.base}/api/v1/sync", json={"app": "web"},
                               headers={"Origin": "https://evil.example"}, timeout=10)
    assert other_page.status_code == 403
    assert broker.llen("reconcile") == before + 1


def test_without_tokens_only_loopback_names_are_answered(served) -> None:
    server, _ = served
    rebound = requests.get(f"{server.base}/api/v1/units", headers={"Host": "evil.example"},
                           timeout=10)
    assert rebound.status_code == 403
    assert requests.get(f"{server.base}/", headers={"Host": "localhost:1"},
                        timeout=10).status_code == 200


def _push(ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "after": "c" * 40, "commits": [
        {"added": [], "modified": ["apps/web/deploy.yaml"], "removed": []}]}).encode()


def test_webhook_refusals_enqueue_nothing(served) -> None:
    server, url = served
    broker = redis.Redis.from_url(url)
    queued = (broker.llen("fetch"), broker.llen("reconcile"))
    hook = f"{server.base}/hooks/github/git"
    body = _push()
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
    wrong = requests.post(hook, data=body, timeout=10, headers={
        **headers, "X-GitHub-Delivery": "w1", "X-Hub-Signature-256": github_signature("nope", body)})
    assert wrong.status_code == 401
    unsigned = requests.post(hook, data=body, headers=headers, timeout=10)
    assert unsigned.status_code == 401
    big = b"{" + b" " * (1024 * 1024) + b"}"
    large = requests.post(hook, data=big, timeout=10, headers={
        **headers, "X-Hub-Signature-256": github_signature(SECRET, big)})
    assert large.status_code == 413
    streamed = requests.post(hook, data=iter([b" " * 65536] * 20), headers=headers, timeout=10)
    assert streamed.status_code == 413                  # no Content-Length: cut while read
    assert requests.post(f"{server.base}/hooks/github/quiet", data=body, headers=headers,
                         timeout=10).status_code == 404           # no webhook configured
    assert requests.post(f"{server.base}/hooks/gitlab/git", data=body, timeout=10, headers={
        "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "wrong"}).status_code == 401
    assert (broker.llen("fetch"), broker.llen("reconcile")) == queued
    assert not broker.exists("fleetsync:source:git:fetch-wanted")
    log = server.log.read_text()
    assert "webhook refused" in log and "apps/web/deploy.yaml" not in log   # never the body


def test_pushes_enqueue_one_fetch_or_the_changed_units_first(served) -> None:
    server, url = served
    broker = redis.Redis.from_url(url)
    hook = f"{server.base}/hooks/github/git"
    fetches, requests_before = broker.llen("fetch"), broker.llen("reconcile")

    # no file list (a generic hook): the source's fetch, once while it has not begun
    generic = f"{server.base}/hooks/generic/git"
    plain = requests.post(generic, data=b"", headers={"X-Fleetsync-Token": SECRET}, timeout=10)
    assert plain.status_code == 202, plain.text
    assert [e["task"] for e in plain.json()["enqueued"]] == ["fleetsync.fetch_source"]
    joined = requests.post(generic, data=b"", headers={"X-Fleetsync-Token": SECRET}, timeout=10)
    assert joined.json()["enqueued"] == [] and "has not begun" in joined.json()["joined"]
    assert broker.llen("fetch") == fetches + 1
    broker.delete("fleetsync:source:git:fetch-wanted")     # as the fetch beginning does

    # a push that names its files: the changed application's sync first, then its clusters
    body = _push()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1",
               "X-Hub-Signature-256": github_signature(SECRET, body)}
    first = requests.post(hook, data=body, headers=headers, timeout=10)
    assert first.status_code == 202, first.text
    assert [(e["task"], e["args"]) for e in first.json()["enqueued"]] == [
        ("fleetsync.sync", ["web", None])]                  # web on both of its clusters
    assert [(t["task"], t["args"]) for t in first.json()["then"]] == [
        ("fleetsync.reconcile_cluster", ["prod"]), ("fleetsync.reconcile_cluster", ["stage"])]
    message = json.loads(broker.lindex("reconcile", 0))
    assert message["headers"]["task"] == "fleetsync.sync"
    again = requests.post(hook, data=body, headers=headers, timeout=10)
    assert again.status_code == 202 and again.json()["enqueued"] == []
    assert again.json()["ignored"] == "delivery seen before"
    other = requests.post(hook, data=body, timeout=10,
                          headers={**headers, "X-GitHub-Delivery": "d-2"})
    assert other.json()["enqueued"] == [] and other.json()["joined"] == \
        "the same push is being handled"
    assert broker.llen("reconcile") == requests_before + 1
    assert broker.llen("fetch") == fetches + 1

    branch = _push("refs/heads/feature")
    ignored = requests.post(hook, data=branch, timeout=10, headers={
        "X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(SECRET, branch)})
    assert ignored.status_code == 202 and "not the source's branch" in ignored.json()["ignored"]
    ping = requests.post(hook, data=b"{}", timeout=10, headers={
        "X-GitHub-Event": "ping", "X-Hub-Signature-256": github_signature(SECRET, b"{}")})
    assert ping.status_code == 200 and ping.json()["pong"] is True
    assert broker.llen("fetch") == fetches + 1 and broker.llen("reconcile") == requests_before + 1


def test_dashboard_pages_render(served) -> None:
    server, _ = served
    fleet = requests.get(f"{server.base}/", timeout=10).text
    assert 'data-unit="stage/web" data-phase="Degraded"' in fleet
    assert "bbbbbbb: 2/3 applied, 1 Ready, 1 Degraded" in fleet
    assert "git main (default branch) (current)" in fleet
    unit = requests.get(f"{server.base}/units/prod/web", timeout=10).text
    assert "http://flower.example/flower/task/task-1" in unit and "spec.replicas" in unit
    assert "Ada Lovelace" in unit
    assert requests.get(f"{server.base}/static/fleet.js", timeout=10).status_code == 200
    assert requests.get(f"{server.base}/units/x/y", timeout=10).status_code == 404


def test_tokens_guard_everything_but_webhooks(redis_url: str, tmp_path: Path) -> None:
    from tests.conftest import new_redis_db

    url = new_redis_db(redis_url)
    (tmp_path / "fleet.yaml").write_text(SPEC)
    (tmp_path / "tokens").write_text(TOKEN + "\n")
    env = {**_env(url, tmp_path), "FLEETSYNC_SERVER_TOKEN_FILE": str(tmp_path / "tokens"),
           "TEST_HOOK_SECRET": SECRET}
    server = ServerProcess(env, tmp_path / "server.log", "--host", "0.0.0.0")
    try:
        server.wait_ready()
        api = f"{server.base}/api/v1/units"
        refused = requests.get(api, timeout=10)
        assert refused.status_code == 401 and "Bearer" in refused.headers["www-authenticate"]
        assert requests.get(f"{server.base}/", timeout=10).headers["www-authenticate"] \
            .startswith("Basic")
        assert requests.get(api, headers={"Authorization": "Bearer " + "x" * 40},
                            timeout=10).status_code == 401
        assert requests.get(api, headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=10).status_code == 200
        assert requests.get(f"{server.base}/", auth=("ops", TOKEN), timeout=10).status_code == 200
        assert requests.post(f"{server.base}/api/v1/sync", json={"app": "web"},
                             timeout=10).status_code == 401
        body = _push()
        hook = requests.post(f"{server.base}/hooks/github/git", data=body, timeout=10, headers={
            "X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(SECRET, body)})
        assert hook.status_code == 202            # a webhook proves itself with its signature
    finally:
        server.stop()


def test_a_public_address_without_tokens_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "server", "--host", "0.0.0.0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=_env("redis://127.0.0.1:1/0", tmp_path))
    assert proc.returncode == 1
    assert "beyond loopback without authentication" in proc.stderr
