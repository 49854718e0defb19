"""Tenancy: an application touches only what it is allowed to, with its own identity, and prune
never takes what is not its to take. Real API server with RBAC; nothing patched by hand."""

from __future__ import annotations

import pytest

from shared.errors import FleetsyncError
from workers.apply.engine import apply_unit
from workers.apply.kube import Kube
from workers.apply.policy import PolicyError
from workers.apply.testing import application, configmap, namespace, unique

pytestmark = pytest.mark.k8s


@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


@pytest.fixture()
def ns(kube) -> str:
    name = unique("ten")
    kube.create("/api/v1/namespaces", namespace(name))
    return name


def binding(name: str) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]}


def deployer(kube: Kube, ns: str) -> str:
    """A ServiceAccount that may do anything in ``ns`` and nothing elsewhere."""
    kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}})
    kube.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "all"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})
    kube.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "deployer-all"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "all"},
        "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}]})
    return f"{ns}/deployer"


def test_an_application_acts_as_its_service_account_and_is_refused_whole(kube, ns):
    app = application(unique("app"), service_account=deployer(kube, ns))
    crb = unique("grab")
    with pytest.raises(FleetsyncError) as caught:
        apply_unit(kube, app=app, objects=[configmap("mine", ns), binding(crb)],
                   revision="r1", token=1)
    message = str(caught.value)
    assert f"ClusterRoleBinding/{crb}" in message
    assert f'system:serviceaccount:{ns}:deployer" cannot' in message
    assert "clusterrolebindings" in message
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/mine") is None   # nothing
    result = apply_unit(kube, app=app, objects=[configmap("mine", ns)], revision="r1", token=2)
    assert result.counts["created"] == 1
    live = kube.get(f"/api/v1/namespaces/{ns}/configmaps/mine")
    managers = {m["manager"] for m in live["metadata"]["managedFields"]}
    assert managers == {"fleetsync"}


def test_policy_refuses_other_namespaces_kinds_and_fleetsync_system_before_any_write(kube, ns):
    app = application(unique("app"), allowed_namespaces=(ns,), denied_kinds=("Secret",))
    other = unique("other")
    before = kube.counters.snapshot()["writes"]
    with pytest.raises(PolicyError) as caught:
        apply_unit(kube, app=app, objects=[
            configmap("ok", ns), configmap("elsewhere", other),
            configmap("squat", "fleetsync-system"), binding(unique("crb")),
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": ns}}],
            revision="r1", token=1)
    message = str(caught.value)
    assert f"ConfigMap/{other}/elsewhere: namespace {other} is not in allowedNamespaces" in message
    assert "ConfigMap/fleetsync-system/squat: namespace fleetsync-system is reserved" in message
    assert "cluster-scoped objects are not allowed" in message
    assert f"Secret/{ns}/s: kind Secret is in deniedKinds" in message
    assert kube.counters.snapshot()["writes"] == before
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/ok") is None


def test_a_namespace_holding_others_objects_is_not_pruned(kube):
    app, ns = application(unique("app")), unique("mine")
    apply_unit(kube, app=app, objects=[namespace(ns), configmap("ours", ns)], revision="r1",
               token=1)
    kube.create(f"/api/v1/namespaces/{ns}/configmaps", configmap("by-hand", ns))
    keep = unique("keep")
    result = apply_unit(kube, app=app, objects=[namespace(keep)], revision="r2", token=2)
    (skipped,) = [c for c in result.changeset.entries if c.ref.kind == "Namespace"
                  and c.ref.name == ns]
    assert skipped.action == "skipped" and "ConfigMap/by-hand (not fleetsync's)" in skipped.reason
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/ours") is None     # pruned
    assert kube.get(f"/api/v1/namespaces/{ns}/configmaps/by-hand")
    assert (kube.get(f"/api/v1/namespaces/{ns}").get("metadata") or {}).get(
        "deletionTimestamp") is None


def test_adopted_objects_stay_unless_prune_adopted_and_kube_system_is_never_pruned(kube, ns):
    name = unique("app")
    kube.create(f"/api/v1/namespaces/{ns}/configmaps", configmap("pre", ns))
    adopt = application(name, adopt=True)
    apply_unit(kube, app=adopt, objects=[configmap("pre", ns, v="git"), namespace("kube-system")],
               revision="r1", token=1)
    result = apply_unit(kube, app=adopt, objects=[configmap("other", ns)], revision="r2", token=2)
    reasons = {str(c.ref): c.reason for c in result.changeset.entries}
    assert "prune: adopted" in reasons[f"ConfigMap/{ns}/pre"]
    assert reasons["Namespace/kube-system"] == "a namespace fleetsync never prunes"
    assert kube.get(f"/api/v1/namespaces/{ns}/configmaps/pre")
    pruning = application(name, adopt=True, prune_adopted=True)
    result = apply_unit(kube, app=pruning, objects=[configmap("other", ns)], revision="r3",
                        token=3)
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/pre") is None
    assert kube.get("/api/v1/namespaces/kube-system")
