"""dependsOn: an application waits for its dependencies' real health, without holding a worker.

On the cluster with controllers and kwok Nodes: the dependency's Deployment first
has a broken image (its Pods never become Ready), so it is Degraded and its
dependent waits; a commit fixes the image, its Pods become Ready, and only then is
the dependent applied. One worker process with one slot does all of it, so the
waits cannot be holding it.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import new_redis_db
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def db(namespace: str, image: str) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "db", "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [{"name": "db", "image": image}]}}}})


def test_dependent_waits_for_its_dependency_to_be_healthy_without_holding_the_only_worker(
        workload_fleet, redis_url, tmp_path):
    from kubernetes import client, config

    stack = Stack(tmp_path, new_redis_db(redis_url), dict(workload_fleet.clusters))
    ns = stack.namespace
    stack.repo.write("base/deploy.yaml", db(ns, "postgres:broken"))
    stack.repo.write("top/cm.yaml", json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "top", "namespace": ns},
        "data": {"needs": "db"}}))
    stack.repo.commit("base and top")
    stack.repo.push()
    base, top = f"base-{stack.app}", f"top-{stack.app}"
    stack.spec.write_text(
        f"sources:\n  - name: git\n    url: {stack.repo.bare_url()}\n    branch: main\n"
        f"clusters:\n  - name: work-1\n    kubeconfig: {workload_fleet.clusters['work-1']}\n"
        "applications:\n"
        "  - name: ns-owner\n    source: git\n    path: app\n    clusters: {names: [work-1]}\n"
        f"  - name: {base}\n    source: git\n    path: base\n    clusters: {{names: [work-1]}}\n"
        "    timeout: 10m\n    dependsOn: [ns-owner]\n"
        f"  - name: {top}\n    source: git\n    path: top\n    clusters: {{names: [work-1]}}\n"
        f"    dependsOn: [{base}]\n")
    from scheduler.client import Client
    from shared.settings import Settings

    stack.start_worker("only", "--concurrency", "1")
    api = Client(Settings(redis_url=stack.redis_url))
    api_client = config.new_client_from_config(config_file=workload_fleet.clusters["work-1"])
    core = client.CoreV1Api(api_client)
    try:
        for app in ("ns-owner", base, top):
            api.sync(app, "work-1")
        store = stack.store

        def status(app: str):
            return store.get_status(app, "work-1")
        stack.wait("base Degraded: its Pod cannot pull its image", lambda: (
            status(base).phase == "Degraded" and "ImagePullBackOff" in status(base).message),
            timeout=90)
        stack.wait("top waits for base", lambda: (
            status(top).phase == "Progressing" and f"waiting for {base}" in status(top).message),
            timeout=60)
        assert "top" not in [c.metadata.name for c in core.list_namespaced_config_map(ns).items]

        stack.repo.write("base/deploy.yaml", db(ns, "postgres:16"))
        fixed = stack.repo.commit("db: a real image")
        stack.repo.push()
        api.sync(base, "work-1")
        stack.wait("base Ready once its Pod is", lambda: (
            status(base).phase == "Ready" and status(base).revision == fixed), timeout=90)
        stack.wait("top applied once base is Ready", lambda: status(top).phase == "Ready",
                   timeout=90)
        assert core.read_namespaced_config_map("top", ns).data == {"needs": "db"}
        pods = core.list_namespaced_pod(ns, label_selector="app=db").items
        assert any(p.status.phase == "Running" and p.spec.containers[0].image == "postgres:16"
                   for p in pods)
    finally:
        api_client.close()
        api.close()
        stack.stop()
