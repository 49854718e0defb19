"""Health: pure checks per kind and per Pod, and what apply and its follow-up report on a real API server."""

from __future__ import annotations

import pytest

from workers.apply.engine import apply_unit, recheck_unit
from workers.apply.health import DEGRADED, HEALTHY, PROGRESSING, check, pod_problem, selector_of
from workers.apply.kube import Kube
from workers.apply.testing import application, configmap, deployment, namespace, unique


def with_status(obj: dict, generation: int = 1, **status) -> dict:
    return {**obj, "metadata": {**obj["metadata"], "generation": generation}, "status": status}


def rolled_out(replicas: int) -> dict:
    return {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas}


# --- pure --------------------------------------------------------------------

def test_deployment_rolled_out_is_healthy():
    assert check(with_status(deployment("d", "n", 3), **rolled_out(3)))[0] == HEALTHY


def test_deployment_waiting_for_replicas_is_progressing_with_counts():
    status = {**rolled_out(3), "availableReplicas": 0}
    assert check(with_status(deployment("d", "n", 3), **status)) == (
        PROGRESSING, "0/3 replicas available")


def test_deployment_not_observed_yet_is_progressing():
    verdict = check(with_status(deployment("d", "n", 3), generation=2, **rolled_out(3)))
    assert verdict[0] == PROGRESSING and "not observed" in verdict[1]
    assert check(deployment("d", "n", 1))[0] == PROGRESSING       # no status at all


def test_deployment_scaled_to_zero_is_healthy():
    assert check(deployment("d", "n", 0)) == (HEALTHY, "scaled to zero")


def test_deployment_past_its_progress_deadline_is_degraded():
    status = {**rolled_out(1), "availableReplicas": 0, "conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
         "message": "ReplicaSet web-1 has timed out progressing."}]}
    assert check(with_status(deployment("d", "n", 1), **status)) == (
        DEGRADED, "ReplicaSet web-1 has timed out progressing.")


def test_statefulset_and_daemonset():
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
           "spec": {"replicas": 2}}
    assert check(with_status(sts, **rolled_out(2)))[0] == HEALTHY
    assert check(with_status(sts, **{**rolled_out(2), "readyReplicas": 1})) == (
        PROGRESSING, "1/2 replicas ready")
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"}}
    full = {"observedGeneration": 1, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2,
            "numberAvailable": 2}
    assert check(with_status(ds, **full))[0] == HEALTHY
    assert check(with_status(ds, **{**full, "numberAvailable": 1}))[0] == PROGRESSING


def test_job_complete_failed_running():
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}}
    done = [{"type": "Complete", "status": "True"}]
    failed = [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]
    assert check(with_status(job, conditions=done))[0] == HEALTHY
    assert check(with_status(job, conditions=failed)) == (DEGRADED, "BackoffLimitExceeded")
    assert check(with_status(job, active=1))[0] == PROGRESSING


def test_crd_established_and_ready_conditions():
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "x"}}
    assert check(crd)[0] == PROGRESSING
    assert check(with_status(crd, conditions=[{"type": "Established", "status": "True"}]))[0] \
        == HEALTHY
    custom = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    ready = [{"type": "Ready", "status": "True"}]
    waiting = [{"type": "Ready", "status": "False", "message": "waiting for backend"}]
    assert check(with_status(custom, conditions=ready))[0] == HEALTHY
    assert check(with_status(custom, conditions=waiting)) == (PROGRESSING, "waiting for backend")


def test_everything_else_is_healthy():
    assert check(configmap("c", "n"))[0] == HEALTHY


def pod(name: str, *statuses: dict) -> dict:
    return {"kind": "Pod", "metadata": {"name": name}, "status": {"containerStatuses": list(statuses)}}


def test_a_container_that_cannot_become_ready_is_named_with_its_reason():
    crashing = {"name": "web", "restartCount": 4, "state": {"waiting": {
        "reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}}
    assert pod_problem(pod("p", crashing)) == \
        "container web: CrashLoopBackOff, 4 restarts: back-off 40s restarting failed container"
    pulling = {"name": "web", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
    assert pod_problem(pod("p", pulling)) == "container web: ImagePullBackOff"


def test_a_container_still_starting_is_no_problem():
    creating = {"name": "web", "state": {"waiting": {"reason": "ContainerCreating"}}}
    running = {"name": "web", "ready": True, "state": {"running": {}}}
    assert pod_problem(pod("p", creating)) == "" and pod_problem(pod("p", running)) == ""
    assert pod_problem({"kind": "Pod", "metadata": {"name": "p"}}) == ""


def test_selector_is_built_from_match_labels():
    assert selector_of(deployment("web", "n", 1)) == "app=web"
    assert selector_of({"spec": {"selector": {"matchExpressions": []}}}) == ""


# --- against a real API server (no controllers: nothing ever rolls out) ------------

@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


@pytest.mark.k8s
def test_apply_reports_health_and_never_waits_for_it(kube):
    ns, name = unique("health"), unique("web")
    objects = [namespace(ns), deployment(name, ns, replicas=3), configmap("c", ns)]
    result = apply_unit(kube, app=application(name, timeout=600), objects=objects,
                        revision="r1", token=1)
    assert not result.healthy and not result.degraded
    assert result.to_dict()["health"] == [
        f"Deployment/{ns}/{name}: Progressing: rollout not observed yet (0/3 replicas available)"
        " [built-in apps/Deployment]"]     # the rule that decided is named
    again = apply_unit(kube, app=application(name, timeout=600), objects=objects,
                       revision="r1", token=2)
    assert again.writes == 0 and [p[0] for p in again.problems] == [p[0] for p in result.problems]


@pytest.mark.k8s
def test_a_follow_up_reads_only_objects_the_unit_owns(kube):
    ns, name = unique("health"), unique("web")
    objects = [namespace(ns), deployment(name, ns, replicas=1), configmap("c", ns)]
    result = apply_unit(kube, app=application(name), objects=objects, revision="r1", token=1)
    pending = [ref.id for ref, _, _ in result.problems]
    forged = ["apps/v1/Deployment/kube-system/not-ours", "v1/Secret/default/token", "junk"]
    problems = recheck_unit(kube, name, pending + forged)
    assert [str(ref) for ref in problems] == [f"Deployment/{ns}/{name}"]
    assert recheck_unit(kube, name, forged) == {}
