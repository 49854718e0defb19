"""Drift policy and ignore rules, on a cluster with controllers: ``drift: detect`` writes nothing
and reports who drifted what; ``ignoreDifferences`` leaves a real HorizontalPodAutoscaler's
``spec.replicas`` alone instead of fighting it."""

from __future__ import annotations

import time

import pytest

from shared.spec.model import IgnoreRule
from workers.apply.engine import apply_unit
from workers.apply.kube import Kube
from workers.apply.testing import application, namespace, unique

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def kube(work_kube):
    return work_kube


def web(ns: str, replicas: int | None = 2) -> dict:
    spec: dict = {"selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns}, "spec": spec}


def hpa(ns: str, minimum: int) -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "web"},
                     "minReplicas": minimum, "maxReplicas": 10,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization",
                                                   "averageUtilization": 80}}}]}}


def replicas(kube: Kube, ns: str) -> int:
    return int(kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")["spec"]["replicas"])


def wait_for(check, what: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.5)


def test_detect_reports_who_drifted_what_and_writes_nothing_until_asked(kube):
    ns, app = unique("detect"), application(unique("app"), drift="detect")
    objects = [namespace(ns), web(ns, 2)]
    apply_unit(kube, app=app, objects=objects, revision="r1", token=1, correct_drift=False)
    kube.request("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale",
                 body={"spec": {"replicas": 5}}, content_type="application/merge-patch+json")
    before = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")["metadata"]
    seen = apply_unit(kube, app=app, objects=objects, revision="r1", token=2,
                      correct_drift=False)
    assert seen.detected and seen.writes == 0
    assert any(line.startswith(f"Deployment/{ns}/web spec.replicas: 5 -> 2 (by ")
               for line in seen.drifted_lines()), seen.drifted_lines()
    after = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")["metadata"]
    ours = [[m for m in meta["managedFields"] if m["manager"] == "fleetsync"]
            for meta in (before, after)]
    assert ours[0] == ours[1]                  # fleetsync wrote nothing (controllers may have)
    assert replicas(kube, ns) == 5
    corrected = apply_unit(kube, app=app, objects=objects, revision="r1", token=3,
                           correct_drift=True)                 # `fleetsync sync`
    assert not corrected.detected and corrected.drift_corrections == 1
    assert replicas(kube, ns) == 2


@pytest.mark.parametrize("rule", [
    IgnoreRule(group="apps", kind="Deployment", json_pointers=("/spec/replicas",)),
    IgnoreRule(managers=("kube-controller-manager",)),
], ids=["json-pointer", "field-manager"])
def test_an_hpa_owned_replicas_is_left_alone(kube, rule):
    ns = unique("hpa")
    app = application(unique("app"), ignore_differences=(rule,))
    objects = [namespace(ns), web(ns, 2), hpa(ns, 4)]
    apply_unit(kube, app=app, objects=objects, revision="r1", token=1)
    wait_for(lambda: replicas(kube, ns) == 4, "the HPA scaled the Deployment to its minimum")
    again = apply_unit(kube, app=app, objects=objects, revision="r1", token=2)
    assert again.drift_corrections == 0 and again.counts["configured"] == 0, again.to_dict()
    assert replicas(kube, ns) == 4
    upgraded = apply_unit(kube, app=app, objects=[namespace(ns), web(ns, 3), hpa(ns, 4)],
                          revision="r2", token=3)                # a new revision leaves it too
    assert upgraded.writes <= 1 and replicas(kube, ns) == 4
