"""An object that an annotation keeps on the cluster is named in the unit's message.

A real worker and beat keep a unit on a bare control plane. A ConfigMap that says
``argocd.argoproj.io/sync-options: Prune=false`` leaves Git: the unit is Ready at the
new revision, the ConfigMap is still there, and the status and the history entry say
it was left on the cluster.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import new_redis_db
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def test_an_object_kept_by_prune_false_is_named_in_the_status(dev_fleet, redis_url,
                                                                tmp_path_factory, kube_clients):
    from kubernetes import client

    s = Stack(tmp_path_factory.mktemp("keep"), new_redis_db(redis_url), dev_fleet.clusters)
    try:
        s.repo.write("app/kept.yaml", json.dumps({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kept", "namespace": s.namespace,
                         "annotations": {"argocd.argoproj.io/sync-options": "Prune=false"}},
            "data": {"v": "1"}}))
        first = s.repo.commit("a ConfigMap that is never pruned")
        s.repo.push()
        s.write_spec(["dev-1"])
        s.start_worker("w1")
        s.start_beat()
        s.wait("Ready with the ConfigMap", lambda: s.ready_at("dev-1", first), timeout=90)

        s.repo.remove("app/kept.yaml")
        second = s.repo.commit("the ConfigMap leaves Git")
        s.repo.push()
        s.wait("Ready without it", lambda: s.ready_at("dev-1", second), timeout=90)
        line = (f"ConfigMap/{s.namespace}/kept: no longer in Git, left on the cluster "
                "(argocd.argoproj.io/sync-options: Prune=false)")
        assert line in s.status("dev-1")["message"]
        entry = next(e for e in s.history("dev-1") if e.get("revision") == second)
        assert line in entry["message"]
        core = client.CoreV1Api(kube_clients["dev-1"])
        assert core.read_namespaced_config_map("kept", s.namespace).data == {"v": "1"}
    finally:
        s.stop()
