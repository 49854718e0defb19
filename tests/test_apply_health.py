"""Health: pure checks per kind, and waiting on a real API server for a rollout."""

from __future__ import annotations

import threading
import time

import pytest

from shared.errors import HealthError
from workers.apply.engine import apply_unit
from workers.apply.health import DEGRADED, HEALTHY, PROGRESSING, check
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


# --- against a real API server --------------------------------------------------

@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


def set_rolled_out(api_client, name: str, ns: str, replicas: int, delay: float) -> None:
    """What the deployment controller would do: report the rollout in status."""
    from kubernetes import client

    time.sleep(delay)
    status = {"status": rolled_out(replicas)}
    client.AppsV1Api(api_client).patch_namespaced_deployment_status(name, ns, status)


@pytest.mark.k8s
def test_wait_returns_once_the_rollout_is_reported(kube, kube_clients):
    ns, name = unique("health"), unique("web")
    app = application(name, wait=True, timeout=20)
    objects = [namespace(ns), deployment(name, ns, replicas=2)]
    patcher = threading.Thread(target=set_rolled_out,
                               args=(kube_clients["dev-1"], name, ns, 2, 1.5))
    patcher.start()
    try:
        started = time.monotonic()
        result = apply_unit(kube, app=app, objects=objects, revision="r1", token=1, poll=0.2)
    finally:
        patcher.join()
    assert result.healthy and "health_pending" not in result.to_dict()
    assert 1.0 < time.monotonic() - started < 15


@pytest.mark.k8s
def test_wait_times_out_naming_the_unhealthy_object(kube):
    ns, name = unique("health"), unique("web")
    app = application(name, wait=True, timeout=1.5)
    objects = [namespace(ns), deployment(name, ns, replicas=3), configmap("c", ns)]
    with pytest.raises(HealthError) as caught:
        apply_unit(kube, app=app, objects=objects, revision="r1", token=1, poll=0.2)
    message = str(caught.value)
    assert f"Deployment/{ns}/{name}: Progressing" in message
    assert "ConfigMap" not in message
    assert f"dev-1/{name}" in message and "@r1" in message      # unit and revision


@pytest.mark.k8s
def test_without_wait_health_is_reported_not_enforced(kube):
    ns, name = unique("health"), unique("web")
    result = apply_unit(kube, app=application(name), objects=[namespace(ns),
                        deployment(name, ns, replicas=1)], revision="r1", token=1)
    assert not result.healthy
    assert result.to_dict()["health_pending"] == [
        f"Deployment/{ns}/{name}: Progressing: rollout not observed yet (0/1 replicas available)"]
