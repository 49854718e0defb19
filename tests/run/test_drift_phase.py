"""Drift is recorded as such: a corrected drift is a history entry with its fields, and a
drift that cannot be corrected leaves the unit ``Drifted`` until it can.

A real worker and beat keep a unit on a bare control plane in step. Someone scales
the Deployment by hand: the next tick puts it back, and history says which field
went from what to what. Someone edits a ConfigMap by hand and locks it with a
ValidatingAdmissionPolicy (the API server's own admission, no webhook): the
correction is refused, the unit is ``Drifted`` naming the object and the refusal,
and once the lock is gone the next tick corrects it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, new_redis_db
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
POLICY = "fleetsync-test-locked-configmaps"


@pytest.fixture(scope="module")
def stack(dev_fleet, redis_url, tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("drift"), new_redis_db(redis_url), dev_fleet.clusters)
    s.write_spec(["dev-1"])
    s.start_worker("w1")
    s.start_beat()
    rev = s.repo.head()
    s.wait("Ready", lambda: s.ready_at("dev-1", rev), timeout=90)
    yield s
    s.stop()


def history_text(stack: Stack) -> str:
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "history", stack.app,
                           "--cluster", "dev-1"], cwd=ROOT, env=stack.env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_corrected_drift_is_a_history_entry_with_its_fields(stack, kube_clients):
    from kubernetes import client

    apps = client.AppsV1Api(kube_clients["dev-1"])
    apps.patch_namespaced_deployment_scale("web", stack.namespace, {"spec": {"replicas": 5}})
    line = f"Deployment/{stack.namespace}/web spec.replicas: 5 -> 2"

    def corrected() -> bool:
        return any([f.split(" (by ")[0] for f in e.get("drift", {}).get(
            f"Deployment/{stack.namespace}/web", [])] == ["spec.replicas: 5 -> 2"]
            for e in stack.history("dev-1"))
    stack.wait("the drift corrected and recorded", corrected, timeout=60)
    entry = next(e for e in stack.history("dev-1") if e.get("drift"))
    assert entry["result"] == "Ready" and entry["message"].startswith(f"corrected drift: {line}")
    assert apps.read_namespaced_deployment("web", stack.namespace).spec.replicas == 2
    assert f"drift corrected: {line}" in history_text(stack)


def test_a_drift_that_cannot_be_corrected_is_drifted_until_it_can(stack, kube_clients):
    from kubernetes import client

    core = client.CoreV1Api(kube_clients["dev-1"])
    admission = client.AdmissionregistrationV1Api(kube_clients["dev-1"])
    ns, rev = stack.namespace, stack.repo.head()
    admission.create_validating_admission_policy({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY},
        "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [{
            "apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
            "resources": ["configmaps"]}]},
            "validations": [{"expression": "!has(oldObject.metadata.labels) || "
                                           "!('locked' in oldObject.metadata.labels)",
                             "message": "this ConfigMap is locked"}]}})
    admission.create_validating_admission_policy_binding({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": POLICY},
        "spec": {"policyName": POLICY, "validationActions": ["Deny"]}})
    try:
        # the lock first, and in force (the API server takes a moment to load a policy),
        # then the hand edit: else a tick could put the value back before the lock holds
        core.create_namespaced_config_map(ns, {"metadata": {
            "name": "probe", "labels": {"locked": "true"}}, "data": {"n": "0"}})

        def locked() -> bool:
            try:
                core.patch_namespaced_config_map("probe", ns, {"data": {"n": "1"}})
            except client.exceptions.ApiException as exc:
                return "this ConfigMap is locked" in str(exc.body)
            return False
        stack.wait("the admission policy in force", locked, timeout=60)
        core.patch_namespaced_config_map("settings", ns, {
            "metadata": {"labels": {"locked": "true"}}, "data": {"value": "by hand"}})

        def drifted() -> bool:
            status = stack.status("dev-1")
            return (status["phase"] == "Drifted" and status["revision"] == rev
                    and f"ConfigMap/{ns}/settings" in status["message"]
                    and "this ConfigMap is locked" in status["message"])
        stack.wait("Drifted, naming the object and the refusal", drifted, timeout=90)
        assert core.read_namespaced_config_map("settings", ns).data["value"] == "by hand"
        assert "Drifted" in history_text(stack)
    finally:
        admission.delete_validating_admission_policy_binding(POLICY)
        admission.delete_validating_admission_policy(POLICY)

    def corrected() -> bool:
        return (stack.ready_at("dev-1", rev)
                and core.read_namespaced_config_map("settings", ns).data["value"] == "one")
    stack.wait("corrected once the lock is gone", corrected, timeout=90)
    entry = next(e for e in stack.history("dev-1") if e.get("drift"))
    (fields,) = entry["drift"].values()
    assert list(entry["drift"]) == [f"ConfigMap/{ns}/settings"]
    assert fields[0].startswith("data.value: changed (by OpenAPI-Generator at ")   # no values
