"""``fleetsync sync --local`` runs the stages in this process through the same protocol:
against the workers' Redis when it answers, on an in-process stand-in when it does not."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, new_redis_db
from tests.support.stack import Stack, free_port

pytestmark = [pytest.mark.k8s]


def _sync(stack: Stack, *extra: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", "sync", stack.app, "--cluster",
                           "dev-1", "--local", *extra], cwd=ROOT, env=stack.env(**env),
                          capture_output=True, text=True, timeout=120)


def test_local_sync_without_redis_applies_and_says_so(dev_fleet, redis_url, tmp_path, kube_clients):
    from kubernetes import client

    stack = Stack(tmp_path, new_redis_db(redis_url), dev_fleet.clusters)
    stack.write_spec(["dev-1"])
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    proc = _sync(stack, FLEETSYNC_REDIS_URL=nowhere)
    assert proc.returncode == 0, proc.stderr
    assert "Redis is not reachable: syncing without the workers' lock" in proc.stderr
    assert f"{stack.app} on dev-1 at " in proc.stdout and ": Ready" in proc.stdout
    result = json.loads(_sync(stack, "-o", "json", FLEETSYNC_REDIS_URL=nowhere).stdout)
    assert result["phase"] == "Ready" and result["counts"]["unchanged"] == 3
    cm = client.CoreV1Api(kube_clients["dev-1"]).read_namespaced_config_map(
        "settings", stack.namespace)
    assert cm.data == {"value": "one", "cluster": "dev-1"}


def test_local_sync_with_redis_records_the_run_like_workers(dev_fleet, redis_url, tmp_path):
    stack = Stack(tmp_path, new_redis_db(redis_url), dev_fleet.clusters)
    stack.write_spec(["dev-1"])
    proc = _sync(stack, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    entry = stack.history("dev-1")[0]
    assert entry["trigger"] == "cli" and entry["result"] == "Ready"
    assert stack.status("dev-1")["phase"] == "Ready"


def test_render_warns_about_a_document_that_is_no_object(dev_fleet, redis_url, tmp_path):
    stack = Stack(tmp_path, new_redis_db(redis_url), dev_fleet.clusters)
    stack.repo.write("app/values.yaml", "title: not a Kubernetes object\nreplicas: 3\n")
    stack.repo.commit("a values file beside the manifests")
    stack.repo.push()
    stack.write_spec(["dev-1"])
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "render", stack.app,
                           "--cluster", "dev-1"], cwd=ROOT, env=stack.env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "warning: " in proc.stderr and "app/values.yaml" in proc.stderr
    assert "kind: ConfigMap" in proc.stdout and "title:" not in proc.stdout
