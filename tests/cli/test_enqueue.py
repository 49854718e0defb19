"""Scripts enqueue syncs by task name: the Python client, the CLI, and Flower's REST API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT, new_redis_db
from tests.support.stack import Stack, free_port

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(dev_fleet, redis_url, tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("enqueue"), new_redis_db(redis_url), dev_fleet.clusters)
    s.write_spec(["dev-1", "dev-2"])
    s.start_worker("w1")
    yield s
    s.stop()


def test_python_client_waits_for_every_targeted_cluster(stack):
    from scheduler.client import Client
    from shared.settings import Settings

    client = Client(Settings(redis_url=stack.redis_url))
    try:
        result = client.sync(stack.app, wait=True, timeout=90)
    finally:
        client.close()
    assert result["ok"], result
    assert {u["cluster"] for u in result["units"]} == {"dev-1", "dev-2"}
    assert all(u["phase"] == "Ready" for u in result["units"])
    assert stack.history("dev-1")[0]["trigger"] == "api"


def test_cli_sync_wait_prints_each_cluster(stack):
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "sync", stack.app,
                           "--cluster", "dev-2", "--wait", "--timeout", "90"],
                          cwd=ROOT, env=stack.env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "dev-2" in proc.stdout and "Ready" in proc.stdout
    assert stack.history("dev-2")[0]["trigger"] == "cli"
    status = subprocess.run([sys.executable, "-m", "scheduler.cli", "status", "-o", "json",
                             "--app", stack.app], cwd=ROOT, env=stack.env(), capture_output=True,
                            text=True, timeout=60)
    rows = json.loads(status.stdout)
    assert {r["cluster"] for r in rows} == {"dev-1", "dev-2"}
    assert set(rows[0]) == {"app", "cluster", "phase", "revision", "message", "last_synced_at",
                            "age_s", "stale",
                            "held_by", "held_until", "held_revision"}


def test_cli_sync_of_unknown_app_fails_clearly(stack):
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "sync", "no-such-app",
                           "--wait", "--timeout", "30"], cwd=ROOT, env=stack.env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no application named 'no-such-app'" in proc.stderr


def _http(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                 method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_flower_rest_api_enqueues_and_shows_readable_tasks(stack):
    port = free_port()
    flower = stack._spawn("flower", ["flower", "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            _http(f"{base}/api/workers?refresh=1")
            break
        except OSError:
            if time.monotonic() > deadline or flower.poll() is not None:
                raise AssertionError((stack.tmp / "flower.log").read_text()[-3000:])
            time.sleep(0.5)
    sent = _http(f"{base}/api/task/async-apply/fleetsync.sync", {"args": [stack.app, "dev-1"]})
    assert sent["task-id"]
    stack.wait("a sync by Flower", lambda: any(
        e["trigger"] == "api" and e["task_id"] for e in stack.history("dev-1")[:1]), timeout=60)
    runs = ("fleetsync.render", "fleetsync.apply")     # push mode: a run is one of them
    stack.wait("Flower lists the run", lambda: any(
        t.get("name") in runs for t in _http(f"{base}/api/tasks").values()), timeout=30)
    tasks = _http(f"{base}/api/tasks")
    applied = [t for t in tasks.values() if t.get("name") in runs]
    assert stack.app in applied[0]["args"] and "dev-1" in applied[0]["args"]
    assert "'phase': 'Ready'" in (applied[0].get("result") or "") or applied[0]["state"] != "SUCCESS"


def test_flower_refuses_to_listen_beyond_loopback_without_auth(stack):
    env = {k: v for k, v in stack.env().items() if not k.startswith("FLOWER_")}
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "flower", "--address", "0.0.0.0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "without authentication" in proc.stderr and "FLOWER_BASIC_AUTH" in proc.stderr


def test_metrics_are_exposed_by_the_worker(stack, dev_fleet):
    stack.stop()                      # this worker alone serves the syncs below
    port = free_port()
    stack.start_worker("metrics", FLEETSYNC_METRICS_PORT=str(port),
                       PROMETHEUS_MULTIPROC_DIR=str(_fresh_dir(stack.tmp / "prom")))
    from scheduler.client import Client
    from shared.settings import Settings

    client = Client(Settings(redis_url=stack.redis_url))
    try:
        for _ in range(3):
            client.sync(stack.app, wait=True, timeout=60)
    finally:
        client.close()

    def scraped() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            return ""
    stack.wait("metrics", lambda: "fleetsync_sync_ready" in scraped(), timeout=60)
    text = scraped()
    for name in ("fleetsync_reconcile_duration_seconds", "fleetsync_apply_objects_total",
                 "fleetsync_lock_wait_seconds", "fleetsync_source_fetch_duration_seconds"):
        assert name in text


def _fresh_dir(path):
    os.makedirs(path, exist_ok=True)
    return path
