"""An application that leaves the fleet spec: its objects are orphaned (the default) or pruned
(``onRemoval: prune``), its inventory goes, and its unit is forgotten. Real workers and beat."""

from __future__ import annotations

import json

import pytest

from tests.conftest import new_redis_db
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def app_spec(name: str, path: str, extra: str = "") -> str:
    return (f"  - name: {name}\n    source: git\n    path: {path}\n"
            f"    clusters: {{names: [dev-1]}}\n    wait: false\n{extra}")


def write(stack: Stack, apps: list[str]) -> None:
    stack.spec.write_text(
        f"sources:\n  - name: git\n    url: {stack.repo.bare_url()}\n    branch: main\n"
        f"    interval: 2s\nclusters:\n  - name: dev-1\n"
        f"    kubeconfig: {stack.kubeconfigs['dev-1']}\n    interval: 2s\n"
        "applications:\n" + "".join(apps))


def objects(ns: str) -> str:
    return "\n---\n".join([
        json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "left", "namespace": ns}, "data": {"a": "1"}})])


def test_leaving_the_spec_orphans_by_default_and_prunes_when_asked(dev_fleet, redis_url,
                                                                     tmp_path, kube_clients):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    stack = Stack(tmp_path, new_redis_db(redis_url), dev_fleet.clusters)
    core = client.CoreV1Api(kube_clients["dev-1"])
    orphan_ns, prune_ns = f"orphan-{stack.app}", f"prune-{stack.app}"
    stack.repo.write("orphan/objects.yaml", objects(orphan_ns))
    stack.repo.write("prune/objects.yaml", objects(prune_ns))
    stack.repo.commit("two applications")
    stack.repo.push()
    keep = app_spec(stack.app, "app")
    orphaned, pruned = f"orphaned-{stack.app}", f"pruned-{stack.app}"
    try:
        write(stack, [keep, app_spec(orphaned, "orphan"),
                      app_spec(pruned, "prune", "    onRemoval: prune\n")])
        stack.start_worker("w1")
        stack.start_beat()
        store = stack.store
        rev = stack.repo.head()
        for app in (stack.app, orphaned, pruned):
            stack.wait(f"{app} Ready", lambda a=app: store.get_status(a, "dev-1").phase == "Ready"
                       and store.get_status(a, "dev-1").revision == rev, timeout=90)
        write(stack, [keep])

        def forgotten(app: str) -> bool:
            return all(s.app != app for s in store.all_statuses())
        stack.wait("both removed and forgotten", lambda: forgotten(orphaned) and forgotten(pruned),
                   timeout=90)
        left = core.read_namespaced_config_map("left", orphan_ns)
        assert "fleetsync.io/application" not in (left.metadata.labels or {})
        assert "fleetsync.io/application" not in (core.read_namespace(orphan_ns).metadata.labels
                                                  or {})
        with pytest.raises(ApiException) as gone:
            core.read_namespaced_config_map("left", prune_ns)
        assert gone.value.status == 404
        try:                          # a bare control plane never finalizes a Namespace
            assert core.read_namespace(prune_ns).metadata.deletion_timestamp is not None
        except ApiException as exc:
            assert exc.status == 404
        inventories = [c.metadata.name for c in
                       core.list_namespaced_config_map("fleetsync-system").items]
        assert f"fleetsync-{orphaned}" not in inventories
        assert f"fleetsync-{pruned}" not in inventories
        assert f"fleetsync-{stack.app}" in inventories
        assert store.get_status(stack.app, "dev-1").phase == "Ready"
    finally:
        stack.stop()
