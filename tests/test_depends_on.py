"""dependsOn: an application waits for its dependencies to be Ready, without holding a worker."""

from __future__ import annotations

import json

import pytest

from tests.conftest import new_redis_db
from tests.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def test_dependent_waits_for_its_dependency_without_holding_the_only_worker(
        dev_fleet, redis_url, tmp_path, kube_clients):
    from kubernetes import client

    stack = Stack(tmp_path, new_redis_db(redis_url), dev_fleet.clusters)
    ns = stack.namespace
    stack.repo.write("base/deploy.yaml", json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "db", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}}}))
    stack.repo.write("top/cm.yaml", json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "top", "namespace": ns},
        "data": {"needs": "db"}}))
    stack.repo.commit("base and top")
    stack.repo.push()
    stack.spec.write_text(
        f"sources:\n  - name: git\n    url: {stack.repo.bare_url()}\n    branch: main\n"
        f"clusters:\n  - name: dev-1\n    kubeconfig: {dev_fleet.clusters['dev-1']}\n"
        "applications:\n"
        "  - name: ns-owner\n    source: git\n    path: app\n    clusters: {names: [dev-1]}\n"
        f"  - name: base-{stack.app}\n    source: git\n    path: base\n    clusters: {{names: [dev-1]}}\n"
        "    wait: true\n    timeout: 4s\n    dependsOn: [ns-owner]\n"
        f"  - name: top-{stack.app}\n    source: git\n    path: top\n    clusters: {{names: [dev-1]}}\n"
        f"    dependsOn: [base-{stack.app}]\n")
    from scheduler.client import Client
    from shared.settings import Settings

    stack.start_worker("only", "--concurrency", "1")
    api = Client(Settings(redis_url=stack.redis_url))
    try:
        for app in ("ns-owner", f"base-{stack.app}", f"top-{stack.app}"):
            api.sync(app, "dev-1")
        store = stack.store

        def phase(app: str) -> str:
            return store.get_status(app, "dev-1").phase
        stack.wait("base waited for health and failed",
                   lambda: phase(f"base-{stack.app}") == "Failed", timeout=60)
        stack.wait("top waits for base, which is not Ready", lambda: (
            store.get_status(f"top-{stack.app}", "dev-1").phase == "Progressing"
            and f"waiting for base-{stack.app}" in store.get_status(
                f"top-{stack.app}", "dev-1").message), timeout=60)
        assert phase(f"base-{stack.app}") == "Failed"
        core = client.CoreV1Api(kube_clients["dev-1"])
        assert "top" not in [c.metadata.name for c in core.list_namespaced_config_map(ns).items]

        apps = client.AppsV1Api(kube_clients["dev-1"])      # play the Deployment controller
        dep = apps.read_namespaced_deployment("db", ns)
        apps.patch_namespaced_deployment_status("db", ns, {"status": {
            "observedGeneration": dep.metadata.generation, "replicas": 1, "updatedReplicas": 1,
            "availableReplicas": 1, "readyReplicas": 1}})
        api.sync(f"base-{stack.app}", "dev-1")
        stack.wait("top applied once base is Ready",
                   lambda: phase(f"top-{stack.app}") == "Ready", timeout=60)
        assert core.read_namespaced_config_map("top", ns).data == {"needs": "db"}
    finally:
        api.close()
        stack.stop()
