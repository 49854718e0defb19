"""Health rules, table by table: the verdict type, kstatus's conventions, each built-in
kind, the generic reading of custom resources as real controllers write them, custom
checks and the Pod diagnosis helpers. Pure and fast: no API server, no Redis.

Where kstatus and Argo CD disagree, the case says which reading is followed and why.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from workers.apply import health
from workers.apply.health import (
    DEGRADED, HEALTHY, PROGRESSING, SUSPENDED, UNKNOWN, Health, HealthRules, Verdict, blocking,
    check)
from workers.apply.pods import pods_problem, unbound_claims, unschedulable

H, P, D, S, U = HEALTHY, PROGRESSING, DEGRADED, SUSPENDED, UNKNOWN


def obj(api: str, kind: str, spec: dict | None = None, status: dict | None = None,
        generation: int | None = 1, **meta: Any) -> dict:
    out: dict[str, Any] = {"apiVersion": api, "kind": kind,
                           "metadata": {"name": "x", "namespace": "n", **meta}}
    if generation is not None:
        out["metadata"]["generation"] = generation
    if spec is not None:
        out["spec"] = spec
    if status is not None:
        out["status"] = status
    return out


def cond(type_: str, status: str = "True", reason: str = "", message: str = "") -> dict:
    out = {"type": type_, "status": status}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def table(*rows: tuple) -> Any:
    """(id, object, expected status[, text in the message]) rows for parametrize."""
    return pytest.mark.parametrize("case", [pytest.param(r[1:], id=r[0]) for r in rows])


def verdict_of(case: tuple, rules: HealthRules | None = None) -> Verdict:
    verdict = check(case[0], rules)
    assert verdict.status == case[1], verdict
    if len(case) > 2:
        assert case[2] in verdict.message, verdict
    return verdict


# --- the verdict type ------------------------------------------------------------

def test_verdict_is_a_pair_with_a_rule():
    v = Verdict(HEALTHY, "ok", "built-in Pod")
    status, message = v
    assert (status, message) == ("Healthy", "ok") and v[0] == HEALTHY and v[1] == "ok"
    assert v == (HEALTHY, "ok") == Verdict("Healthy", "ok", "another rule") and len(v) == 2
    assert v.status is Health.HEALTHY and v.message == "ok" and v.rule == "built-in Pod"
    assert hash(v) == hash((HEALTHY, "ok")) and {v: 1}[(HEALTHY, "ok")] == 1


def test_verdict_survives_pickling_with_its_rule():
    again = pickle.loads(pickle.dumps(Verdict(DEGRADED, "bad", "generic: phase")))
    assert again == (DEGRADED, "bad") and again.rule == "generic: phase"


def test_health_members_equal_the_module_constants():
    assert [h.value for h in Health] == ["Healthy", "Progressing", "Degraded", "Suspended",
                                         "Unknown"]
    assert (H, P, D, S, U) == (Health.HEALTHY, Health.PROGRESSING, Health.DEGRADED,
                               Health.SUSPENDED, Health.UNKNOWN)
    with pytest.raises(ValueError):
        Verdict("Fine", "no such status")


@pytest.mark.parametrize("status, suspended_is, blocks", [
    (H, S, False), (P, S, True), (D, S, True), (U, S, True), (S, S, False), (S, P, True),
    (H, P, False)], ids=lambda v: str(v))
def test_blocking(status, suspended_is, blocks):
    assert blocking(Verdict(status, ""), HealthRules(suspended_is=suspended_is)) is blocks


def test_unhealthy_returns_only_blocking_verdicts():
    paused = obj("apps/v1", "Deployment", {"paused": True, "replicas": 1})
    cm = obj("v1", "ConfigMap", generation=None)
    assert list(health.unhealthy({"a": paused, "b": cm})) == []            # type: ignore[dict-item]
    rules = HealthRules(suspended_is=PROGRESSING)
    assert list(health.unhealthy({"a": paused}, rules)) == ["a"]            # type: ignore[dict-item]


# --- custom checks first -------------------------------------------------------------

def test_custom_checks_in_order_first_answer_wins_and_an_exception_is_unknown():
    def skip(o):
        return None

    def cel(o):
        return Verdict(DEGRADED, "cel says no", "cel: cert-manager.io/Certificate")

    def broken(o):
        raise KeyError("status")

    cert = obj("cert-manager.io/v1", "Certificate", status={"conditions": [cond("Ready")]})
    assert check(cert, HealthRules(custom=(skip, cel))).rule == "cel: cert-manager.io/Certificate"
    assert check(cert, HealthRules(custom=(skip,))) == (HEALTHY, "Ready")
    failed = check(cert, HealthRules(custom=(broken, cel)))
    assert failed.status == UNKNOWN and "broken" in failed.message and "KeyError" in failed.message
    plain = check(cert, HealthRules(custom=(lambda o: (SUSPENDED, "by lambda"),)))
    assert isinstance(plain, Verdict) and plain == (SUSPENDED, "by lambda")


def test_kind_rules_are_keyed_by_group():
    fake = obj("example.com/v1", "Deployment", status={"conditions": [cond("Ready")]})
    assert check(fake).rule == "generic: conditions"
    real = obj("apps/v1", "Deployment", {"replicas": 0}, {"observedGeneration": 1})
    assert check(real).rule == "built-in apps/Deployment"


# --- kstatus's conventions, before any kind rule ----------------------------------------

@table(
    ("deleting-configmap", obj("v1", "ConfigMap", deletionTimestamp="2024-01-01T00:00:00Z"),
     P, "being deleted"),
    ("deleting-cert", obj("cert-manager.io/v1", "Certificate", status={"conditions": [
        cond("Ready")]}, deletionTimestamp="2024-01-01T00:00:00Z"), P, "deleted"),
    ("generation-not-observed", obj("example.com/v1", "Widget", generation=3,
                                    status={"observedGeneration": 2}), P, "generation 3"),
    ("generation-as-string", obj("example.com/v1", "Widget", generation=3,
                                 status={"observedGeneration": "2"}), P, "generation 3"),
    # A hash in observedGeneration (Argo Rollouts before v1.0) is no generation.
    ("generation-hash-ignored", obj("example.com/v1", "Widget", generation=3, status={
        "observedGeneration": "7bcdbf7bd9", "conditions": [cond("Ready")]}), H),
    ("stalled", obj("example.com/v1", "Widget", status={"conditions": [
        cond("Stalled", reason="InvalidPath", message="path not found")]}), D, "path not found"),
    ("reconciling", obj("example.com/v1", "Widget", status={"conditions": [
        cond("Reconciling", message="applying")]}), P, "applying"),
    ("reconciling-on-builtin", obj("apps/v1", "Deployment", {"replicas": 0}, {
        "observedGeneration": 1, "conditions": [cond("Reconciling")]}), P),
    ("stalled-false-is-nothing", obj("example.com/v1", "Widget", status={"conditions": [
        cond("Stalled", "False"), cond("Ready")]}), H),
    ("flux-suspended", obj("source.toolkit.fluxcd.io/v1", "GitRepository", {"suspend": True},
                           {"conditions": [cond("Ready", "False", "GitOperationFailed")]}),
     S, "suspended"),
)
def test_conventions(case):
    verdict_of(case)


# --- Deployment ----------------------------------------------------------------------------

def dep(want: int | None = 3, generation: int = 1, spec: dict | None = None,
        **status: Any) -> dict:
    s = {"replicas": want} if want is not None else {}
    return obj("apps/v1", "Deployment", {**s, **(spec or {})}, status or None, generation)


ROLLED = {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
          "availableReplicas": 3}
OK_CONDITIONS = [cond("Available", reason="MinimumReplicasAvailable"),
                 cond("Progressing", reason="NewReplicaSetAvailable")]


@table(
    ("rolled-out", dep(**ROLLED, conditions=OK_CONDITIONS), H, "3/3"),
    ("rolled-out-no-conditions", dep(**ROLLED), H),
    ("default-one-replica", dep(None, **{**ROLLED, "replicas": 1, "updatedReplicas": 1,
                                        "readyReplicas": 1, "availableReplicas": 1}), H),
    ("no-status", dep(), P, "not observed"),
    ("not-observed", dep(generation=2, **ROLLED), P, "not observed"),
    ("observed-generation-missing", dep(1, replicas=0), P, "not observed"),
    ("updating", dep(**{**ROLLED, "updatedReplicas": 1}), P, "1/3 replicas updated"),
    ("old-pending-termination", dep(**{**ROLLED, "replicas": 4}), P, "pending termination"),
    ("unavailable", dep(**{**ROLLED, "availableReplicas": 1}), P, "1/3"),
    ("not-ready", dep(**{**ROLLED, "readyReplicas": 2}), P, "2/3"),
    ("deadline-exceeded", dep(**{**ROLLED, "availableReplicas": 0, "conditions": [
        cond("Progressing", "False", "ProgressDeadlineExceeded", "ReplicaSet web-1 has timed "
             "out progressing.")]}), D, "timed out"),
    ("paused", dep(spec={"paused": True}, **{**ROLLED, "updatedReplicas": 0}), S, "suspended"),
    ("scaled-to-zero", dep(0, observedGeneration=1), H, "scaled to zero"),
    # kstatus waits for the controller's own word; Argo CD reads counts only (kstatus kept).
    ("counts-met-available-false", dep(**ROLLED, conditions=[
        cond("Available", "False", "MinimumReplicasUnavailable"), OK_CONDITIONS[1]]), P),
    ("counts-met-progressing-false", dep(spec={"progressDeadlineSeconds": 45}, **ROLLED,
                                         conditions=[OK_CONDITIONS[0], cond(
                                             "Progressing", "False", "Some reason")]), P),
    ("counts-met-still-updating", dep(spec={"progressDeadlineSeconds": 600}, **ROLLED,
                                      conditions=[OK_CONDITIONS[0], cond(
                                          "Progressing", reason="ReplicaSetUpdated")]), P),
    ("extensions-group", {**dep(**ROLLED), "apiVersion": "extensions/v1beta1"}, H),
)
def test_deployment(case):
    verdict_of(case)


# --- StatefulSet -------------------------------------------------------------------------

def sts(want: int = 3, strategy: dict | None = None, **status: Any) -> dict:
    spec: dict[str, Any] = {"replicas": want}
    if strategy:
        spec["updateStrategy"] = strategy
    return obj("apps/v1", "StatefulSet", spec, status or None)


STS = {"observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "currentReplicas": 3,
       "updatedReplicas": 3, "currentRevision": "web-1", "updateRevision": "web-1"}


@table(
    ("rolled-out", sts(**STS), H, "3/3"),
    ("no-status", sts(), P),
    ("observed-missing", sts(currentReplicas=1), P),
    ("less-ready", sts(**{**STS, "readyReplicas": 1}), P, "1/3 replicas ready"),
    ("less-created", sts(**{**STS, "replicas": 2}), P, "2/3"),
    ("extra-pods", sts(**{**STS, "replicas": 5}), P, "pending termination"),
    ("less-current", sts(**{**STS, "currentReplicas": 1, "updatedReplicas": 0}), P),
    ("revision-mismatch", sts(**{**STS, "updateRevision": "web-2", "updatedReplicas": 1}), P,
     "web-2"),
    # Both peers: OnDelete never rolls by itself, so a revision mismatch is not waited for.
    ("on-delete", sts(strategy={"type": "OnDelete"}, **{**STS, "updateRevision": "web-2"}), H),
    ("on-delete-not-ready", sts(strategy={"type": "OnDelete"}, **{**STS, "readyReplicas": 2}),
     P),
    ("partition-done", sts(strategy={"type": "RollingUpdate", "rollingUpdate": {
        "partition": 2}}, **{**STS, "updatedReplicas": 1, "updateRevision": "web-2"}), H,
     "partitioned"),
    ("partition-pending", sts(strategy={"type": "RollingUpdate", "rollingUpdate": {
        "partition": 1}}, **{**STS, "updatedReplicas": 1, "updateRevision": "web-2"}), P),
    ("scaled-to-zero", sts(0, observedGeneration=1), H),
)
def test_statefulset(case):
    verdict_of(case)


# --- DaemonSet -----------------------------------------------------------------------------

def ds(strategy: str = "", generation: int = 1, **status: Any) -> dict:
    spec = {"updateStrategy": {"type": strategy}} if strategy else {}
    return obj("apps/v1", "DaemonSet", spec, status or None, generation)


DS = {"observedGeneration": 1, "desiredNumberScheduled": 4, "currentNumberScheduled": 4,
      "updatedNumberScheduled": 4, "numberAvailable": 4, "numberReady": 4}


@table(
    ("rolled-out", ds(**DS), H, "4/4"),
    ("no-status", ds(), P),
    ("no-desired-number", ds(observedGeneration=1), P),
    ("new-generation", ds(generation=2, **DS), P),
    ("less-ready", ds(**{**DS, "numberReady": 2}), P, "2/4 pods ready"),
    ("less-available", ds(**{**DS, "numberAvailable": 2}), P, "2/4"),
    ("less-updated", ds(**{**DS, "updatedNumberScheduled": 1}), P, "updated"),
    ("less-scheduled", ds(**{**DS, "currentNumberScheduled": 3}), P, "scheduled"),
    # Argo CD: OnDelete waits for no update (kstatus has no such case).
    ("on-delete", ds("OnDelete", **{**DS, "updatedNumberScheduled": 1}), H, "OnDelete"),
)
def test_daemonset(case):
    verdict_of(case)


# --- ReplicaSet -----------------------------------------------------------------------------

def rs(**status: Any) -> dict:
    return obj("apps/v1", "ReplicaSet", {"replicas": 2}, status or None)


RS = {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "availableReplicas": 2,
      "fullyLabeledReplicas": 2}


@table(
    ("available", rs(**RS), H),
    ("replica-failure-false", rs(**RS, conditions=[cond("ReplicaFailure", "False")]), H),
    ("no-status", rs(), P),
    ("less-available", rs(**{**RS, "availableReplicas": 1}), P, "1/2"),
    ("less-labelled", rs(**{**RS, "fullyLabeledReplicas": 1}), P, "labelled"),
    # kstatus InProgress, Argo CD Degraded: kstatus followed (the peers' tests favour it);
    # the controller retries and the message still says why.
    ("replica-failure", rs(**{**RS, "readyReplicas": 0, "conditions": [cond(
        "ReplicaFailure", reason="FailedCreate", message='pods "web-" is forbidden: exceeded '
        'quota')]}), P, "exceeded quota"),
)
def test_replicaset(case):
    verdict_of(case)


# --- Pod -----------------------------------------------------------------------------------

def pod(phase: str | None = "Running", policy: str | None = None, containers: list | None = None,
        conditions: list | None = None, **status: Any) -> dict:
    spec = {"restartPolicy": policy} if policy else {}
    st: dict[str, Any] = {**status}
    if phase:
        st["phase"] = phase
    if containers is not None:
        st["containerStatuses"] = containers
    if conditions is not None:
        st["conditions"] = conditions
    return obj("v1", "Pod", spec, st or None, generation=None)


def waiting(reason: str, message: str = "", name: str = "web", restarts: int = 0) -> dict:
    return {"name": name, "ready": False, "restartCount": restarts,
            "state": {"waiting": {"reason": reason, "message": message}}}


RUNNING = {"name": "web", "ready": True, "state": {"running": {}}}


@table(
    ("running-ready", pod(containers=[RUNNING], conditions=[cond("Ready")]), H),
    ("succeeded", pod("Succeeded"), H),
    # Argo CD Degraded, kstatus Current ("completed, but not successfully"): the brief's
    # reading, Argo CD's, is followed: a failed hook Pod must fail the hook.
    ("failed", pod("Failed", message="Pod was evicted"), D, "evicted"),
    ("failed-exit-code", pod("Failed", containers=[{"name": "job", "state": {"terminated": {
        "exitCode": 2}}}]), D, "exit code 2"),
    ("failed-oom", pod("Failed", containers=[{"name": "job", "state": {"terminated": {
        "reason": "OOMKilled", "exitCode": 137}}}]), D, "OOMKilled"),
    ("crashloop", pod(containers=[waiting("CrashLoopBackOff", "back-off 40s", restarts=4)]), D,
     "CrashLoopBackOff, 4 restarts"),
    ("image-pull-backoff-pending", pod("Pending", containers=[waiting("ImagePullBackOff",
                                                                     "Back-off pulling")]), D),
    ("err-image-pull", pod("Pending", containers=[waiting("ErrImagePull")]), D, "ErrImagePull"),
    ("invalid-image-name", pod("Pending", containers=[waiting("InvalidImageName")]), D),
    ("config-error", pod("Pending", containers=[waiting("CreateContainerConfigError",
                                                        'secret "db" not found')]), D, "db"),
    ("container-creating", pod("Pending", containers=[waiting("ContainerCreating")]), P,
     "ContainerCreating"),
    # Argo CD: a Pod that does not restart (a hook) is not failed early by a waiting reason.
    ("never-image-pull-backoff", pod("Pending", "Never", [waiting("ImagePullBackOff")]), P),
    # kstatus Failed, Argo CD Progressing: kstatus followed, with the scheduler's message.
    ("unschedulable", pod("Pending", conditions=[cond(
        "PodScheduled", "False", "Unschedulable", "0/3 nodes are available: 3 Insufficient "
        "cpu.")]), D, "Insufficient cpu"),
    ("pending", pod("Pending"), P),
    ("no-phase", pod(None), P, "not observed"),
    ("running-not-ready", pod(containers=[{"name": "web", "ready": False, "state": {
        "running": {}}}], conditions=[cond("Ready", "False")]), P),
    ("running-restarted-not-ready", pod(containers=[{"name": "web", "ready": False, "state": {
        "running": {}}, "lastState": {"terminated": {"exitCode": 1}}}],
        conditions=[cond("Ready", "False")]), D),
    # Argo CD: a running Pod that runs to completion is Progressing until it Succeeded.
    ("running-never", pod("Running", "Never", [RUNNING], [cond("Ready")]), P),
    ("running-on-failure", pod("Running", "OnFailure", [RUNNING]), P),
    ("unknown-phase", pod("Unknown"), U),
)
def test_pod(case):
    verdict_of(case)


IGNORE_POLICY = {"argocd.argoproj.io/ignore-restart-policy": "true"}


def annotated(p: dict, **annotations: str) -> dict:
    p["metadata"]["annotations"] = annotations
    return p


@table(
    # Argo CD's ignore-restart-policy annotation: a Never/OnFailure Pod read as long-running.
    ("ignore-policy-ready", annotated(pod("Running", "Never", [RUNNING], [cond("Ready")]),
                                      **IGNORE_POLICY), H),
    ("ignore-policy-backoff", annotated(pod("Running", "Never", [waiting(
        "ImagePullBackOff", 'Back-off pulling image "web:1"')]), **IGNORE_POLICY), D,
     "ImagePullBackOff"),
    ("ignore-policy-false", annotated(pod("Running", "Never", [RUNNING], [cond("Ready")]), **{
        "argocd.argoproj.io/ignore-restart-policy": "false"}), P),
    # ...but never on a hook, which always runs to completion.
    ("ignore-policy-hook", annotated(pod("Running", "Never", [RUNNING], [cond("Ready")]), **{
        **IGNORE_POLICY, "argocd.argoproj.io/hook": "PostSync"}), P),
    ("ignore-policy-helm-hook", annotated(pod("Running", "OnFailure", [RUNNING], [cond(
        "Ready")]), **{**IGNORE_POLICY, "helm.sh/hook": "post-install"}), P),
)
def test_pod_ignore_restart_policy(case):
    verdict_of(case)


# --- Job and CronJob ------------------------------------------------------------------------

def job(spec: dict | None = None, **status: Any) -> dict:
    return obj("batch/v1", "Job", spec or {}, status or None)


@table(
    ("complete", job(succeeded=1, conditions=[cond("Complete")]), H),
    ("success-criteria-met", job(conditions=[cond("SuccessCriteriaMet")]), H),
    ("failed", job(conditions=[cond("Failed", reason="BackoffLimitExceeded",
                                    message="Job has reached the specified backoff limit")]),
     D, "backoff limit"),
    ("failure-target", job(conditions=[cond("FailureTarget", reason="BackoffLimitExceeded")]),
     D),
    ("suspended-condition", job(conditions=[cond("Suspended", reason="JobSuspended")]), S),
    ("suspend-spec", job({"suspend": True}), S),
    ("not-started", job(), P),
    # kstatus: a started Job is Current; Argo CD Progressing. Argo CD followed: hooks wait.
    ("running", job(startTime="2024-01-01T00:00:00Z", active=2, succeeded=3, conditions=[
        cond("Failed", "False"), cond("Complete", "False")]), P, "2 active"),
)
def test_job(case):
    verdict_of(case)


def cronjob(spec: dict | None = None, **status: Any) -> dict:
    return obj("batch/v1", "CronJob", spec or {"schedule": "0 * * * *"}, status)


@table(
    ("suspended", cronjob({"suspend": True}, lastScheduleTime="2024-01-01T00:00:00Z"), S),
    # Argo CD: Progressing without status; kstatus: always ready. kstatus followed: the
    # first run may be a day away and must not hold the unit.
    ("never-scheduled", cronjob(), H),
    ("never-scheduled-empty-status", cronjob(), H),
    ("last-run-ok", cronjob(lastScheduleTime="2024-01-01T10:00:00Z",
                            lastSuccessfulTime="2024-01-01T10:00:30Z"), H),
    ("last-run-failed", cronjob(lastScheduleTime="2024-01-01T11:00:00Z",
                                lastSuccessfulTime="2024-01-01T10:00:30Z"), D),
    ("running", cronjob(lastScheduleTime="2024-01-01T11:00:00Z", lastSuccessfulTime="2024-01-01"
                        "T10:00:30Z", active=[{"name": "j-1"}]), H),
    ("never-succeeded-yet", cronjob(lastScheduleTime="2024-01-01T11:00:00Z"), H),
)
def test_cronjob(case):
    verdict_of(case)


# --- PVC, Service, Ingress, APIService, PDB --------------------------------------------------

def svc(type_: str = "ClusterIP", ingress: list | None = None, cluster_ip: str = "10.0.0.1"):
    status = {"loadBalancer": {"ingress": ingress}} if ingress else {"loadBalancer": {}}
    return obj("v1", "Service", {"type": type_, "clusterIP": cluster_ip}, status, None)


def ing(address: bool) -> dict:
    lb = {"ingress": [{"ip": "1.2.3.4"}]} if address else {}
    return obj("networking.k8s.io/v1", "Ingress", {}, {"loadBalancer": lb})


NO_LB = HealthRules(load_balancer_address=False)
ING_ADDR = HealthRules(ingress_address=True)


@pytest.mark.parametrize("o, rules, expected", [
    pytest.param(obj("v1", "PersistentVolumeClaim", {}, {"phase": "Bound"}), None, H, id="pvc-bound"),
    pytest.param(obj("v1", "PersistentVolumeClaim", {}, {"phase": "Pending"}), None, P,
                 id="pvc-pending"),
    # Argo CD Degraded, kstatus InProgress: Argo CD followed, a lost volume will not return.
    pytest.param(obj("v1", "PersistentVolumeClaim", {}, {"phase": "Lost"}), None, D,
                 id="pvc-lost"),
    pytest.param(obj("v1", "PersistentVolumeClaim", {}), None, P, id="pvc-no-status"),
    pytest.param(svc(), None, H, id="svc-cluster-ip"),
    pytest.param(svc("NodePort"), None, H, id="svc-node-port"),
    pytest.param(svc("ExternalName"), None, H, id="svc-external-name"),
    # Argo CD waits for the address; kstatus only for a clusterIP. Argo CD by default,
    # switchable off for clusters without a load-balancer controller.
    pytest.param(svc("LoadBalancer"), None, P, id="svc-lb-no-address"),
    pytest.param(svc("LoadBalancer", [{"ip": "1.2.3.4"}]), None, H, id="svc-lb-address"),
    pytest.param(svc("LoadBalancer", [{"hostname": "a.elb"}]), NO_LB, H, id="svc-lb-hostname"),
    pytest.param(svc("LoadBalancer"), NO_LB, H, id="svc-lb-not-awaited"),
    pytest.param(svc("LoadBalancer", cluster_ip=""), NO_LB, P, id="svc-lb-no-cluster-ip"),
    pytest.param(ing(False), None, H, id="ingress-kstatus-default"),
    pytest.param(ing(False), ING_ADDR, P, id="ingress-waits-for-address"),
    pytest.param(ing(True), ING_ADDR, H, id="ingress-address"),
    pytest.param({**ing(False), "apiVersion": "extensions/v1beta1"}, ING_ADDR, P,
                 id="ingress-extensions"),
    pytest.param(obj("policy/v1", "PodDisruptionBudget", {}, {
        "observedGeneration": 1, "currentHealthy": 1, "desiredHealthy": 2}), None, P,
        id="pdb-budget-not-met"),
    pytest.param(obj("policy/v1", "PodDisruptionBudget", {}, {
        "observedGeneration": 1, "currentHealthy": 3, "desiredHealthy": 2}), None, H,
        id="pdb-budget-met"),
    pytest.param(obj("policy/v1", "PodDisruptionBudget", {}, {"observedGeneration": 1}), None,
                 H, id="pdb-observed"),
    pytest.param(obj("apiregistration.k8s.io/v1", "APIService", {}, {"conditions": [cond(
        "Available", reason="Passed", message="all checks passed")]}), None, H,
        id="apiservice-available"),
    # Argo CD: Available False is Progressing (the backing Service may still be starting).
    pytest.param(obj("apiregistration.k8s.io/v1", "APIService", {}, {"conditions": [cond(
        "Available", "False", "MissingEndpoints", "endpoints for service/metrics-server in "
        "kube-system have no addresses")]}), None, P, id="apiservice-missing-endpoints"),
    pytest.param(obj("apiregistration.k8s.io/v1", "APIService", {}), None, P,
                 id="apiservice-no-status"),
])
def test_service_like_kinds(o, rules, expected):
    assert check(o, rules).status == expected


# --- HPA, CRD, built-ins without a rule -------------------------------------------------------

def hpa(*conditions: dict, api: str = "autoscaling/v2") -> dict:
    return obj(api, "HorizontalPodAutoscaler", {}, {"conditions": list(conditions)}
               if conditions else None)


def crd(*conditions: dict) -> dict:
    return obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", {},
               {"conditions": list(conditions)} if conditions else None)


HPA_V1_FAILED = obj("autoscaling/v1", "HorizontalPodAutoscaler", {}, {}, annotations={
    "autoscaling.alpha.kubernetes.io/conditions": json.dumps([cond(
        "ScalingActive", "False", "FailedGetResourceMetric", "missing request for cpu")])})


@table(
    ("hpa-able", hpa(cond("AbleToScale", reason="ReadyForNewScale"), cond("ScalingActive")), H),
    # Argo CD: at min or max replicas is normal work, not a fault.
    ("hpa-limited", hpa(cond("AbleToScale"), cond("ScalingActive"), cond(
        "ScalingLimited", reason="TooFewReplicas")), H),
    ("hpa-metrics-failed", hpa(cond("AbleToScale"), cond(
        "ScalingActive", "False", "FailedGetResourceMetric", "missing request for cpu")), D,
     "missing request"),
    ("hpa-invalid-selector", hpa(cond("ScalingActive", "False", "InvalidSelector")), D),
    # kstatus: an HPA with no status at all is Unknown; with a status but no conditions it
    # is waiting to autoscale (Argo CD).
    ("hpa-no-status", hpa(), U, "no status"),
    ("hpa-status-no-conditions", obj("autoscaling/v2", "HorizontalPodAutoscaler", {}, {
        "currentReplicas": 1, "desiredReplicas": 1}), P, "waiting to autoscale"),
    ("hpa-v1-annotation", HPA_V1_FAILED, D, "missing request"),
    ("crd-established", crd(cond("NamesAccepted"), cond("Established")), H),
    ("crd-no-status", crd(), P),
    # kstatus: Installing is in progress; Argo CD: not established is Degraded. kstatus
    # followed: ``wait`` waits seconds for exactly this and must not fail on it.
    ("crd-installing", crd(cond("Established", "False", "Installing")), P),
    ("crd-names-not-accepted", crd(cond("NamesAccepted", "False", "ListKindConflict",
                                        "WidgetList is already in use")), D, "already in use"),
    ("crd-not-established", crd(cond("Established", "False", "NotAccepted")), D),
    ("crd-non-structural", crd(cond("Established"), cond(
        "NonStructuralSchema", message="spec.x: Required value")), D, "Required value"),
    ("configmap", obj("v1", "ConfigMap", generation=None), H),
    ("secret", obj("v1", "Secret", generation=None), H),
    ("role", obj("rbac.authorization.k8s.io/v1", "Role", generation=None), H),
    ("namespace-active", obj("v1", "Namespace", {}, {"phase": "Active"}, None), H),
    ("node-not-ready", obj("v1", "Node", {}, {"conditions": [cond("Ready", "False")]}, None), P),
)
def test_hpa_crd_and_the_rest(case):
    verdict_of(case)


# --- Argo's kinds built into gitops-engine / shipped with Argo CD ------------------------------

def rollout(spec: dict | None = None, **status: Any) -> dict:
    return obj("argoproj.io/v1alpha1", "Rollout",
               {"replicas": 3, "strategy": {"canary": {"steps": []}}, **(spec or {})},
               status or None)


RO = {"observedGeneration": "1", "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
      "currentPodHash": "abc", "stableRS": "abc"}


@table(
    ("workflow-running", obj("argoproj.io/v1alpha1", "Workflow", {}, {"phase": "Running"}), P),
    ("workflow-succeeded", obj("argoproj.io/v1alpha1", "Workflow", {}, {"phase": "Succeeded"}),
     H),
    ("workflow-failed", obj("argoproj.io/v1alpha1", "Workflow", {}, {
        "phase": "Failed", "message": "child 'x' failed"}), D, "child"),
    ("workflow-error", obj("argoproj.io/v1alpha1", "Workflow", {}, {"phase": "Error"}), D),
    ("rollout-healthy", rollout(**RO), H),
    ("rollout-no-status", rollout(), P),
    ("rollout-steps-pending", rollout(**{**RO, "stableRS": "old"}), P, "steps"),
    ("rollout-more-replicas", rollout(**{**RO, "updatedReplicas": 1}), P, "1/3"),
    ("rollout-paused-step", rollout(**RO, pauseConditions=[{"reason": "CanaryPauseStep"}]), S),
    ("rollout-user-pause", rollout({"paused": True}, **RO), S),
    ("rollout-aborted", rollout(**RO, conditions=[cond(
        "Progressing", "False", "RolloutAborted", "Rollout aborted update to revision 2")]), D,
     "aborted"),
    ("rollout-invalid-spec", rollout(**RO, conditions=[cond(
        "InvalidSpec", message="The Rollout \"x\" is invalid")]), D),
    ("rollout-bluegreen-cutover", rollout({"strategy": {"blueGreen": {}}}, **RO, blueGreen={
        "activeSelector": "old"}), P, "cutover"),
    ("rollout-bluegreen-active", rollout({"strategy": {"blueGreen": {}}}, **RO, blueGreen={
        "activeSelector": "abc"}), H),
    # v1.0+ states its phase; the phase wins over the counts.
    ("rollout-phase-degraded", rollout(**RO, phase="Degraded", message="InvalidSpec"), D,
     "InvalidSpec"),
    ("rollout-phase-paused", rollout(**RO, phase="Paused"), S),
    ("rollout-phase-progressing", rollout(**RO, phase="Progressing",
                                          message="more replicas need to be updated"), P),
    ("rollout-phase-healthy", rollout(**{**RO, "stableRS": "old"}, phase="Healthy"), H),
    # An invalid spec is reported before the controller ever observes a generation.
    ("rollout-invalid-spec-unobserved", rollout(conditions=[cond(
        "InvalidSpec", message="missing field .spec.strategy")]), D, "missing field"),
    ("rollout-invalid-spec-false", rollout(**RO, conditions=[cond("InvalidSpec", "False")]), H),
    # Before v0.6/v1.0: a hash as observedGeneration, activeSelector at the top, and
    # verifyingPreview for a blue-green preview awaiting promotion.
    ("rollout-legacy-hash-generation", rollout({"strategy": {"blueGreen": {}}}, **{
        **RO, "observedGeneration": "77646c9d4c"}, activeSelector="abc"), H),
    ("rollout-legacy-cutover", rollout({"strategy": {"blueGreen": {}}}, **{
        **RO, "observedGeneration": "77646c9d4c"}, activeSelector="old"), P, "cutover"),
    ("rollout-legacy-verifying-preview", rollout({"strategy": {"blueGreen": {}}}, **{
        **RO, "observedGeneration": "767f98959f"}, verifyingPreview=True, blueGreen={
        "activeSelector": "old", "previewSelector": "abc"}), S),
    ("rollout-new-generation", dict(rollout(**{**RO, "observedGeneration": "1"}),
                                    metadata={"name": "x", "generation": 2}), P,
     "not observed"),
)
def test_argo_kinds(case):
    verdict_of(case)


# --- the generic reading of custom resources, as their controllers write them ------------------

def cr(api: str, kind: str, status: dict | None = None, spec: dict | None = None,
       **meta: Any) -> dict:
    return obj(api, kind, spec if spec is not None else {}, status, **meta)


def conds(*conditions: dict, **status: Any) -> dict:
    return {"conditions": list(conditions), **status}


CERT, XP, FLUX = "cert-manager.io/v1", "ec2.aws.upbound.io/v1beta1", "kustomize.toolkit.fluxcd.io/v1"
GW = "gateway.networking.k8s.io/v1"


@table(
    # cert-manager
    ("cert-issued", cr(CERT, "Certificate", conds(cond(
        "Ready", reason="Ready", message="Certificate is up to date and has not expired"))), H),
    ("cert-issuing", cr(CERT, "Certificate", conds(cond("Ready", "False", "DoesNotExist"), cond(
        "Issuing", reason="DoesNotExist", message="Issuing certificate as Secret does not "
        "exist")), ), P, "Issuing certificate"),
    ("cert-renewing", cr(CERT, "Certificate", conds(cond("Ready"), cond(
        "Issuing", reason="Renewing"))), P),
    ("cert-config-error", cr(CERT, "Certificate", conds(cond(
        "Ready", "False", "ConfigError", "Resource validation failed: spec.acme"))), D,
     "validation failed"),
    ("cert-no-status", cr(CERT, "Certificate"), P, "waiting for its controller"),
    ("issuer-registered", cr(CERT, "ClusterIssuer", conds(cond(
        "Ready", reason="ACMEAccountRegistered", message="The ACME account was registered"))), H),
    ("issuer-acme-failed", cr(CERT, "Issuer", conds(cond(
        "Ready", "False", "ErrRegisterACMEAccount", "Failed to register ACME account"))), D),
    ("cr-denied", cr(CERT, "CertificateRequest", conds(cond("Ready", "False", "Denied"), cond(
        "Denied", reason="Foo", message="Denied by policy"))), D, "policy"),
    ("cr-pending", cr(CERT, "CertificateRequest", conds(cond(
        "Ready", "False", "Pending", "Waiting on certificate issuance"))), P),
    # Crossplane: Synced is the error channel; Ready False while Synced is True is creating.
    ("xp-creating", cr(XP, "VPC", conds(cond("Synced", reason="ReconcileSuccess"), cond(
        "Ready", "False", "Creating"))), P),
    ("xp-unavailable-synced", cr(XP, "VPC", conds(cond("Synced", reason="ReconcileSuccess"),
                                                 cond("Ready", "False", "Unavailable"))), P),
    ("xp-sync-error", cr(XP, "VPC", conds(cond("Synced", "False", "ReconcileError",
                                               "cannot get credentials"), cond(
        "Ready", "False", "Creating"))), D, "credentials"),
    ("xp-available", cr(XP, "VPC", conds(cond("Synced", reason="ReconcileSuccess"), cond(
        "Ready", reason="Available"))), H),
    ("xp-async-failed", cr(XP, "VPC", conds(cond("LastAsyncOperation", "False", "ApplyFailure",
                                                 "apply failed"), cond("Synced"))), D),
    ("xp-claim-waiting", cr("example.org/v1alpha1", "XPostgres", conds(cond(
        "Synced", reason="ReconcileSuccess"), cond("Ready", "False", "Waiting",
                                                  "Composite resource is not yet ready"))), P),
    ("xp-provider-healthy", cr("pkg.crossplane.io/v1", "Provider", conds(
        cond("Installed", reason="ActivePackageRevision"), cond("Healthy",
                                                               reason="HealthyPackageRevision"))),
     H),
    ("xp-composition-statusless", cr("apiextensions.crossplane.io/v1", "Composition"), H),
    # Flux
    ("flux-ready", cr(FLUX, "Kustomization", conds(cond(
        "Ready", reason="ReconciliationSucceeded", message="Applied revision: main@sha1:abc"))),
     H, "Applied revision"),
    ("flux-progressing", cr(FLUX, "Kustomization", conds(cond(
        "Reconciling", reason="Progressing", message="Running 'upgrade' action"), cond(
        "Ready", "Unknown", "Progressing"))), P, "upgrade"),
    ("flux-build-failed", cr(FLUX, "Kustomization", conds(cond(
        "Ready", "False", "BuildFailed", "kustomize build failed: accumulating resources"))), D),
    ("flux-helm-upgrade-failed", cr("helm.toolkit.fluxcd.io/v2", "HelmRelease", conds(cond(
        "Ready", "False", "UpgradeFailed", "Helm upgrade failed: timed out"), cond(
        "Released", "False", "UpgradeFailed"))), D),
    ("flux-stalled", cr("helm.toolkit.fluxcd.io/v2", "HelmRelease", conds(cond(
        "Stalled", reason="RetriesExceeded", message="Failed to upgrade after 3 attempts"),
        cond("Ready", "False", "UpgradeFailed"))), D, "3 attempts"),
    ("flux-git-suspended", cr("source.toolkit.fluxcd.io/v1", "GitRepository", conds(cond(
        "Ready")), {"suspend": True, "url": "https://example.com/repo"}), S),
    ("flux-git-auth-failed", cr("source.toolkit.fluxcd.io/v1", "GitRepository", conds(cond(
        "Ready", "False", "GitOperationFailed", "authentication required"))), D),
)
def test_generic_operators_a(case):
    verdict = verdict_of(case)
    assert verdict.rule.startswith(("generic", "kstatus"))


@table(
    # Knative
    ("kn-ready", cr("serving.knative.dev/v1", "Service", conds(
        cond("ConfigurationsReady"), cond("Ready"), cond("RoutesReady"))), H),
    ("kn-revision-failed", cr("serving.knative.dev/v1", "Service", conds(cond(
        "ConfigurationsReady", "False", "RevisionFailed", "Revision failed with message: "
        "container exited"), cond("Ready", "False", "RevisionFailed"), cond(
        "RoutesReady", "False", "RevisionFailed"))), D),
    ("kn-deploying", cr("serving.knative.dev/v1", "Service", conds(cond(
        "ConfigurationsReady", "Unknown"), cond("Ready", "Unknown", "Deploying"),
        cond("RoutesReady", "Unknown"))), P),
    # KEDA
    ("keda-ready", cr("keda.sh/v1alpha1", "ScaledObject", conds(cond(
        "Ready", reason="ScaledObjectReady"), cond("Active", "False"), cond("Fallback", "False"))),
     H),
    ("keda-fallback", cr("keda.sh/v1alpha1", "ScaledObject", conds(cond("Ready"), cond(
        "Fallback", message="At least one trigger is falling back"))), D),
    ("keda-paused", cr("keda.sh/v1alpha1", "ScaledObject", conds(cond("Ready"), cond(
        "Paused", reason="ScaledObjectPaused"))), S),
    ("keda-trigger-auth-statusless", cr("keda.sh/v1alpha1", "TriggerAuthentication"), H),
    # external-secrets
    ("es-synced", cr("external-secrets.io/v1beta1", "ExternalSecret", conds(cond(
        "Ready", reason="SecretSynced", message="Secret was synced"))), H),
    ("es-sync-error", cr("external-secrets.io/v1beta1", "ExternalSecret", conds(cond(
        "Ready", "False", "SecretSyncedError", "could not get secret data from provider"))), D),
    ("es-store-invalid", cr("external-secrets.io/v1beta1", "SecretStore", conds(cond(
        "Ready", "False", "InvalidProviderConfig", "unable to create client"))), D),
    # Strimzi
    ("kafka-ready", cr("kafka.strimzi.io/v1beta2", "Kafka", conds(cond("Ready"),
                                                                  observedGeneration=1)), H),
    ("kafka-not-ready", cr("kafka.strimzi.io/v1beta2", "Kafka", conds(cond(
        "NotReady", reason="TimeoutException", message="Exceeded timeout of 300000ms"),
        observedGeneration=1)), D, "timeout"),
    ("kafka-topic-error", cr("kafka.strimzi.io/v1beta2", "KafkaTopic", conds(cond(
        "Ready", "False", "KafkaError", "Topic creation failed"))), D),
    # Prometheus operator
    ("prometheus-available", cr("monitoring.coreos.com/v1", "Prometheus", conds(cond(
        "Available"), cond("Reconciled"), availableReplicas=2)), H),
    # Available=Degraded (or False) because some Pods are not ready yet is a partial
    # roll out (Argo CD: Progressing); no Pod ready at all is Degraded.
    ("prometheus-some-pods", cr("monitoring.coreos.com/v1", "Prometheus", conds(cond(
        "Available", "Degraded", "SomePodsNotReady"), cond("Reconciled"))), P),
    ("alertmanager-some-pods", cr("monitoring.coreos.com/v1", "Alertmanager", conds(cond(
        "Available", "False", "SomePodsNotReady"), cond("Reconciled"))), P),
    ("prometheus-no-pod-ready", cr("monitoring.coreos.com/v1", "Prometheus", conds(cond(
        "Available", "False", "NoPodReady", "pod prometheus-0: 0/3 nodes are available"),
        cond("Reconciled"))), D, "nodes are available"),
    ("servicemonitor-statusless", cr("monitoring.coreos.com/v1", "ServiceMonitor"), H),
    ("prometheusrule-statusless", cr("monitoring.coreos.com/v1", "PrometheusRule"), H),
    ("traefik-route-statusless", cr("traefik.io/v1alpha1", "IngressRoute"), H),
    ("istio-vs-statusless", cr("networking.istio.io/v1", "VirtualService"), H),
    # Gateway API
    ("gateway-programmed", cr(GW, "Gateway", conds(cond("Accepted"), cond("Programmed"))), H),
    ("gateway-not-programmed", cr(GW, "Gateway", conds(cond("Accepted"), cond(
        "Programmed", "False", "Pending", "Waiting for controller"))), P),
    ("gateway-invalid", cr(GW, "Gateway", conds(cond("Accepted", "False", "InvalidParameters",
                                                     "gateway class parameters invalid")), ), D),
    ("route-accepted", cr(GW, "HTTPRoute", {"parents": [{"parentRef": {"name": "gw"},
                                                         "conditions": [cond("Accepted"), cond(
                                                             "ResolvedRefs")]}]}), H),
    ("route-backend-not-found", cr(GW, "HTTPRoute", {"parents": [{"conditions": [cond(
        "Accepted"), cond("ResolvedRefs", "False", "BackendNotFound", "service web not "
        "found")]}]}), D, "not found"),
)
def test_generic_operators_b(case):
    verdict_of(case)


@table(
    # cluster-api
    ("capi-cluster-ready", cr("cluster.x-k8s.io/v1beta1", "Cluster", conds(
        cond("Ready"), cond("ControlPlaneReady"), cond("InfrastructureReady"),
        phase="Provisioned")), H),
    ("capi-cluster-provisioning", cr("cluster.x-k8s.io/v1beta1", "Cluster", conds(
        cond("Ready", "False", "WaitingForControlPlane"), phase="Provisioning")), P),
    ("capi-machine-failed", cr("cluster.x-k8s.io/v1beta1", "Machine", {
        "phase": "Failed", "failureMessage": "instance terminated"}), D),
    ("capi-paused", cr("cluster.x-k8s.io/v1beta1", "Cluster", conds(cond("Ready")),
                       {"paused": True}), S),
    # Tekton
    ("tekton-run-succeeded", cr("tekton.dev/v1", "PipelineRun", conds(cond(
        "Succeeded", reason="Succeeded", message="Tasks Completed: 3"))), H),
    ("tekton-run-running", cr("tekton.dev/v1", "PipelineRun", conds(cond(
        "Succeeded", "Unknown", "Running", "Tasks Completed: 1, Incomplete: 2"))), P),
    ("tekton-run-failed", cr("tekton.dev/v1", "TaskRun", conds(cond(
        "Succeeded", "False", "Failed", "step build exited with 1"))), D),
    ("tekton-task-statusless", cr("tekton.dev/v1", "Task"), H),
    # Velero
    ("velero-backup-completed", cr("velero.io/v1", "Backup", {"phase": "Completed"}), H),
    ("velero-backup-in-progress", cr("velero.io/v1", "Backup", {"phase": "InProgress"}), P),
    ("velero-backup-partially-failed", cr("velero.io/v1", "Backup",
                                          {"phase": "PartiallyFailed"}), D),
    ("velero-bsl-unavailable", cr("velero.io/v1", "BackupStorageLocation",
                                  {"phase": "Unavailable"}), D),
    # Argo CD's Application and others reporting health as words
    ("argocd-app-healthy", cr("argoproj.io/v1alpha1", "Application", {
        "health": {"status": "Healthy"}, "sync": {"status": "Synced"}}), H),
    ("argocd-app-degraded", cr("argoproj.io/v1alpha1", "Application", {
        "health": {"status": "Degraded", "message": "Deployment web exceeded its deadline"}}),
     D, "deadline"),
    ("argocd-app-suspended", cr("argoproj.io/v1alpha1", "Application", {
        "health": {"status": "Suspended"}}), S),
    ("rollout-v1-phase-paused", cr("example.io/v1", "Canary", {"phase": "Paused"}), S),
    ("phase-crashloop", cr("example.io/v1", "Thing", {"phase": "CrashLoopBackOff"}), D),
    ("state-provisioning", cr("example.io/v1", "Database", {"state": "provisioning"}), P),
    ("state-available-lowercase", cr("example.io/v1", "Database", {"state": "available"}), H),
    ("status-string-error", cr("example.io/v1", "Thing", {"status": "Error",
                                                          "message": "quota exceeded"}), D,
     "quota"),
    ("phase-and-ready-worst-wins", cr("example.io/v1", "Thing", conds(cond("Ready"),
                                                                    phase="Failed")), D),
    # kstatus: Current when nothing is known; an empty status is no controller yet (brief).
    ("unknown-signals", cr("example.io/v1", "Thing", conds(cond("SomeCondition", "False"))), H),
    ("empty-status", cr("example.io/v1", "Thing", {}), P, "waiting for its controller"),
    ("ready-false-not-ready-yet", cr("something/v1", "MyCR", conds(cond(
        "Ready", "False", "NotReadyYet"), observedGeneration=1)), P),
    ("ready-false-plain-failure", cr("example.io/v1", "Thing", conds(cond(
        "Ready", "False", "ImagePullFailed", "pull access denied"))), D),
    ("ready-unknown", cr("example.io/v1", "Thing", conds(cond("Ready", "Unknown"))), P),
    ("failed-condition", cr("example.io/v1", "Thing", conds(cond("Ready"), cond(
        "Failed", message="backup failed"))), D),
    ("degraded-condition", cr("example.io/v1", "Thing", conds(cond("Degraded")) ), D),
)
def test_generic_operators_c(case):
    verdict_of(case)


UPB, ACK = "aws.upbound.io/v1beta1", "s3.services.k8s.aws/v1alpha1"
CAPI = "cluster.x-k8s.io/v1beta1"


@table(
    # Flux: Reconciling with a *WithRetry reason while Ready is False is a failure retried.
    ("flux-retrying-failure", cr("source.toolkit.fluxcd.io/v1", "GitRepository", conds(cond(
        "Reconciling", reason="ProgressingWithRetry", message="processing object: new "
        "generation 1 -> 2"), cond("Ready", "False", "GitOperationFailed", "authentication "
        "required"), cond("FetchFailed", reason="GitOperationFailed"))), D, "authentication"),
    ("flux-helm-rollback-retrying", cr("helm.toolkit.fluxcd.io/v2", "HelmRelease", conds(cond(
        "Reconciling", reason="ProgressingWithRetry"), cond(
        "Ready", "False", "RollbackSucceeded", "Helm rollback to v3 succeeded"), cond(
        "Released", "False", "UpgradeFailed"))), D, "rollback"),
    ("flux-retrying-ready-unknown", cr(FLUX, "Kustomization", conds(cond(
        "Reconciling", reason="ProgressingWithRetry"), cond("Ready", "Unknown"))), P),
    # A status holding only an empty condition list: the controller has not reported yet.
    ("flux-source-no-conditions-yet", cr("source.toolkit.fluxcd.io/v1", "OCIRepository",
                                         {"conditions": []}), P, "to report"),
    ("no-conditions-observed-generation", cr("example.io/v1", "Thing", {
        "conditions": [], "observedGeneration": -1}, generation=None), P),
    ("status-without-signals", cr("example.io/v1", "Thing", {"lastScheduledTime": "2024-01-01T"
                                                             "00:00:00Z"}), H),
    # Condition types that name trouble by their suffix or prefix.
    ("argo-spec-error", cr("argoproj.io/v1alpha1", "CronWorkflow", conds(cond(
        "SpecError", message="cron schedule is malformed"))), D, "malformed"),
    ("argo-submission-error", cr("argoproj.io/v1alpha1", "CronWorkflow", conds(cond(
        "SubmissionError", message="workflow template not found"))), D),
    ("argo-spec-error-false", cr("argoproj.io/v1alpha1", "CronWorkflow", conds(cond(
        "SpecError", "False"))), H),
    ("appset-error-occurred", cr("argoproj.io/v1alpha1", "ApplicationSet", conds(cond(
        "ErrorOccurred", reason="ApplicationGenerationFromParamsError", message="found less "
        "than two generators"), cond("ResourcesUpToDate", "False"))), D, "generators"),
    ("appset-up-to-date", cr("argoproj.io/v1alpha1", "ApplicationSet", conds(cond(
        "ErrorOccurred", "False"), cond("ParametersGenerated"), cond("ResourcesUpToDate"))), H),
    ("ack-terminal", cr(ACK, "Bucket", conds(cond(
        "ACK.Terminal", reason="AlreadyExists", message="Resource already exists"), cond(
        "ACK.ResourceSynced", "False"), cond("Ready", "False", "ACK.Terminal"))), D,
     "already exists"),
    ("ack-creating", cr(ACK, "Bucket", conds(cond("ACK.ResourceSynced", "False",
                                                  "bucket in CREATING state"), cond(
        "Ready", "False", "bucket in CREATING state"))), P),
    ("flux-fetch-failed", cr("source.toolkit.fluxcd.io/v1", "HelmChart", conds(cond(
        "FetchFailed", reason="SourceUnavailable", message="HelmRepository not found"),
        cond("ArtifactInStorage"))), D),
    ("eso-partially-ready", cr("external-secrets.io/v1beta1", "ClusterExternalSecret", conds(
        cond("PartiallyReady", message="one or more namespaces failed"),
        provisionedNamespaces=["a"])), D, "namespaces failed"),
    # Negative-polarity types: True is trouble, False is fine, never a summary (OLM).
    ("olm-subscription-healthy", cr("operators.coreos.com/v1alpha1", "Subscription", conds(
        cond("CatalogSourcesUnhealthy", "False", "AllCatalogSourcesHealthy"),
        state="AtLatestKnown", installedCSV="op.v1")), H),
    ("olm-catalog-unhealthy", cr("operators.coreos.com/v1alpha1", "Subscription", conds(cond(
        "CatalogSourcesUnhealthy", reason="UnhealthyCatalogSourceFound",
        message="targeted catalogsource redhat-op missing"))), D, "redhat-op"),
    ("olm-install-plan-missing", cr("operators.coreos.com/v1alpha1", "Subscription", conds(
        cond("CatalogSourcesUnhealthy", "False"), cond(
            "InstallPlanMissing", reason="ReferencedInstallPlanNotFound"),
        state="AtLatestKnown")), D),
    ("olm-install-plan-pending", cr("operators.coreos.com/v1alpha1", "Subscription", conds(
        cond("CatalogSourcesUnhealthy", "False"), cond("InstallPlanPending", reason="Installing"),
        state="UpgradePending")), P),
    ("service-unavailable-false", cr("example.io/v1", "Thing", conds(cond(
        "ServiceUnavailable", "False"), cond("Ready"))), H),
    # Busy condition types.
    ("appset-rollout-progressing", cr("argoproj.io/v1alpha1", "ApplicationSet", conds(cond(
        "ResourcesUpToDate"), cond("RolloutProgressing", reason="ApplicationSetModified",
                                   message="performing rollout of step 1"))), P, "step 1"),
    ("capi-rolling-out", cr(CAPI, "Cluster", conds(cond("Available"), cond(
        "RollingOut", reason="RollingOut", message="Rolling out 2 not up-to-date replicas"),
        cond("ScalingUp", "False"))), P, "Rolling out"),
    ("capi-scaling-up", cr(CAPI, "MachineDeployment", conds(cond("Available"), cond(
        "ScalingUp", reason="ScalingUp"))), P),
    # cluster-api's severity: False at Info is an operation in progress, at Error a fault.
    ("capi-ready-false-info", cr(CAPI, "Machine", conds(dict(cond(
        "Ready", "False", "Cloning", "1 of 2 completed"), severity="Info"))), P, "1 of 2"),
    ("capi-ready-false-error", cr(CAPI, "Cluster", conds(dict(cond(
        "Ready", "False", "VCenterUnreachable", "thumbprint does not match"),
        severity="Error"), cond("Available"))), D, "thumbprint"),
    ("capi-ready-but-topology-pending", cr(CAPI, "Cluster", conds(cond("Ready"), dict(cond(
        "TopologyReconciled", "False", "MachineDeploymentsUpgradePending", "upgrade on hold"),
        severity="Info"), phase="Provisioned")), P, "on hold"),
    ("capi-ready-warning-elsewhere", cr(CAPI, "Cluster", conds(cond("Ready"), dict(cond(
        "MachinesSpecUpToDate", "False", "Outdated"), severity="Warning"),
        phase="Provisioned")), H),
    ("capi-severity-error-any-type", cr("addons.cluster.x-k8s.io/v1beta1",
                                        "ClusterResourceSet", conds(dict(cond(
        "ResourcesApplied", "False", "RemoteClusterClientFailed", "failed to apply"),
        severity="Error"), observedGeneration=1)), D, "failed to apply"),
    ("capi-severity-info-any-type", cr("addons.cluster.x-k8s.io/v1beta1",
                                       "ClusterResourceSet", conds(dict(cond(
        "ResourcesApplied", "False", "WaitingForClusterControlPlane"), severity="Info"))), P),
    # Conditions of the items of a status list: OpenShift Routes, per router.
    ("route-admitted", cr("route.openshift.io/v1", "Route", {"ingress": [{
        "routerName": "default", "conditions": [cond("Admitted")]}]}), H),
    ("route-not-admitted", cr("route.openshift.io/v1", "Route", {"ingress": [{
        "routerName": "default", "conditions": [cond("Admitted", "False", "HostAlreadyClaimed",
                                                     "host is claimed by another route")]}]}),
     D, "claimed"),
    ("route-admission-pending", cr("route.openshift.io/v1", "Route", {"ingress": [{
        "routerName": "default", "conditions": [cond("Admitted", "Unknown")]}]}), P),
    # Positive types by suffix, and reasons that read as work under way.
    ("rabbit-ready", cr("rabbitmq.com/v1beta1", "RabbitmqCluster", conds(cond(
        "AllReplicasReady"), cond("ClusterAvailable"), cond("NoWarnings"), cond(
        "ReconcileSuccess"))), H),
    ("rabbit-pods-starting", cr("rabbitmq.com/v1beta1", "RabbitmqCluster", conds(cond(
        "AllReplicasReady", "False", "NotAllPodsReady", "1/3 Pods ready"), cond(
        "ClusterAvailable"), cond("ReconcileSuccess"))), P, "1/3"),
    ("rabbit-reconcile-failed", cr("rabbitmq.com/v1beta1", "RabbitmqCluster", conds(cond(
        "AllReplicasReady"), cond("ReconcileSuccess", "False", "CreateOrUpdateFailed",
                                  "failed to update StatefulSet"))), D),
    ("mariadb-restoring", cr("k8s.mariadb.com/v1alpha1", "MariaDB", conds(cond(
        "Ready", "False", "RestoreNotComplete", "Restoring backup"))), P),
    ("capi-phase-scaling-up", cr(CAPI, "MachineDeployment", {
        "phase": "ScalingUp", "replicas": 5, "readyReplicas": 4, "observedGeneration": 1}), P),
)
def test_generic_operators_d(case):
    verdict_of(case)


KV = "kubevirt.io/v1"


@table(
    # KubeVirt's printableStatus is a phase word; Stopped explains Ready=False.
    ("kubevirt-vm-stopped", cr(KV, "VirtualMachine", conds(cond(
        "Ready", "False", "VMINotExists", "VMI does not exist"), printableStatus="Stopped"),
        {"running": False}), S),
    ("kubevirt-vm-starting", cr(KV, "VirtualMachine", conds(cond(
        "Ready", "False", "GuestNotRunning"), printableStatus="Starting", created=True)), P),
    ("kubevirt-vm-stopping", cr(KV, "VirtualMachine", conds(cond(
        "Ready", "False", "GuestNotRunning"), printableStatus="Stopping")), P),
    ("kubevirt-vm-running", cr(KV, "VirtualMachine", conds(cond("Ready"),
                                                           printableStatus="Running",
                                                           ready=True)), H),
    ("kubevirt-vm-paused", cr(KV, "VirtualMachine", conds(cond("Ready"), cond(
        "Paused", reason="PausedByUser"), printableStatus="Paused", ready=True)), S),
    # A phase word does not excuse a condition that names trouble.
    ("stopped-but-failed-condition", cr("example.io/v1", "Thing", conds(cond(
        "Failed", message="disk lost"), phase="Stopped")), D, "disk lost"),
    # Any string field named as a phase is read, and a word ending in Failed is Degraded.
    ("zalando-cluster-status-updating", cr("acid.zalan.do/v1", "postgresql", {
        "PostgresClusterStatus": "Updating"}), P),
    ("zalando-cluster-status-failed", cr("acid.zalan.do/v1", "postgresql", {
        "PostgresClusterStatus": "SyncFailed"}), D),
    ("zalando-cluster-status-running", cr("acid.zalan.do/v1", "postgresql", {
        "PostgresClusterStatus": "Running"}), H),
    ("cluster-state-error", cr("example.io/v1", "Cache", {"clusterState": "ReplicationError"}),
     D),
    ("non-phase-string-ignored", cr("example.io/v1", "Cache", {"endpoint": "failed.example"}), H),
    ("kubevirt-vmi-scheduled", cr(KV, "VirtualMachineInstance", conds(cond(
        "Ready", "False", "GuestNotRunning"), phase="Scheduled")), P),
    ("kubevirt-vmi-running", cr(KV, "VirtualMachineInstance", conds(cond("Ready"), cond(
        "LiveMigratable"), phase="Running")), H),
    # Words that are Argo CD's own verdicts, and an inconclusive analysis.
    ("argocd-app-unknown", cr("argoproj.io/v1alpha1", "Application",
                              {"health": {"status": "Unknown"}}), U),
    ("argocd-app-missing", cr("argoproj.io/v1alpha1", "Application",
                              {"health": {"status": "Missing"}}), P),
    # The Application's own health verdict stands; its sync and last operation do not add.
    ("argocd-app-healthy-last-sync-failed", cr("argoproj.io/v1alpha1", "Application", {
        "health": {"status": "Healthy"}, "sync": {"status": "OutOfSync"},
        "operationState": {"phase": "Failed", "message": "one or more objects failed"}}), H),
    ("analysis-inconclusive", cr("argoproj.io/v1alpha1", "AnalysisRun", {
        "status": "Inconclusive", "metricResults": [{"name": "m", "inconclusive": 1}]}), U),
    # Run-to-completion kinds are not done while Running.
    ("analysis-running", cr("argoproj.io/v1alpha1", "AnalysisRun", {"phase": "Running"}), P),
    ("experiment-running", cr("argoproj.io/v1alpha1", "Experiment", {"phase": "Running"}), P),
    ("analysis-successful", cr("argoproj.io/v1alpha1", "AnalysisRun", {
        "phase": "Successful", "message": "run terminated"}), H, "terminated"),
    ("analysis-error", cr("argoproj.io/v1alpha1", "AnalysisRun", {"phase": "Error"}), D),
    ("backup-failed-reason", cr("velero.io/v1", "Restore", {
        "phase": "Failed", "failureReason": "encountered errors during restore"}), D,
     "encountered errors"),
    ("schedule-new", cr("velero.io/v1", "Schedule", {"phase": "New"}), P),
    ("schedule-failed-validation", cr("velero.io/v1", "Schedule", {
        "phase": "FailedValidation"}), D),
    ("istio-operator-reconciling", cr("install.istio.io/v1alpha1", "IstioOperator", {
        "status": "RECONCILING", "componentStatus": {"Base": {"status": "RECONCILING"}}}), P),
    # The worst of several phase words wins, one level down too.
    ("es-ready-but-yellow", cr("elasticsearch.k8s.elastic.co/v1", "Elasticsearch", {
        "phase": "Ready", "health": "yellow", "availableNodes": 3}), D),
    ("es-green-applying-changes", cr("elasticsearch.k8s.elastic.co/v1", "Elasticsearch", {
        "phase": "ApplyingChanges", "health": "green"}), P),
    ("es-green-ready", cr("elasticsearch.k8s.elastic.co/v1", "Elasticsearch", {
        "phase": "Ready", "health": "green"}), H),
    ("rook-health-warn", cr("ceph.rook.io/v1", "CephCluster", {
        "ceph": {"health": "HEALTH_WARN"}, "state": "Created",
        "message": "Cluster has warnings"}), D, "warnings"),
    ("rook-health-ok", cr("ceph.rook.io/v1", "CephCluster", {
        "ceph": {"health": "HEALTH_OK"}, "state": "Created", "phase": "Ready"}), H),
    ("spark-pending-rerun", cr("sparkoperator.k8s.io/v1beta2", "SparkApplication", {
        "applicationState": {"state": "PENDING_RERUN"}, "executionAttempts": 3}), P),
    ("spark-failed", cr("sparkoperator.k8s.io/v1beta2", "SparkApplication", {
        "applicationState": {"state": "FAILED", "errorMessage": "driver OOM"}}), D),
    ("unknown-word-prefix-ignored", cr("example.io/v1", "Thing", {"phase": "Frobnicating"}), H),
    # Flagger's phases, CloudNativePG's phrases.
    ("flagger-finalising", cr("flagger.app/v1beta1", "Canary", conds(cond(
        "Promoted", "Unknown", "Finalising"), phase="Finalising", canaryWeight=0)), P),
    ("flagger-promoting", cr("flagger.app/v1beta1", "Canary", {"phase": "Promoting"}), P),
    ("flagger-initialized", cr("flagger.app/v1beta1", "Canary", conds(cond(
        "Promoted", reason="Initialized"), phase="Initialized")), H),
    ("cnpg-setting-up", cr("postgresql.cnpg.io/v1", "Cluster", conds(cond(
        "Ready", "False", "ClusterIsNotReady", "Cluster Is Not Ready"),
        phase="Setting up primary", phaseReason="Creating primary instance")), P),
    ("cnpg-failing-over", cr("postgresql.cnpg.io/v1", "Cluster", conds(cond(
        "Ready", "False", "ClusterIsNotReady"), phase="Failing over",
        phaseReason="Initiating a failover")), D),
    ("cnpg-hibernated", cr("postgresql.cnpg.io/v1", "Cluster", conds(cond(
        "Ready", reason="ClusterIsReady"), cond("cnpg.io/hibernation", reason="Hibernated",
                                                message="Cluster has been hibernated"),
        phase="Cluster in healthy state")), S, "hibernated"),
    ("cnpg-hibernation-off", cr("postgresql.cnpg.io/v1", "Cluster", conds(cond(
        "Ready", reason="ClusterIsReady"), cond("cnpg.io/hibernation", "False"),
        phase="Cluster in healthy state")), H),
    # The healthy / ready booleans.
    ("cnrm-context-healthy", cr("core.cnrm.cloud.google.com/v1beta1", "ConfigConnectorContext",
                                {"healthy": True, "observedGeneration": 1}), H),
    ("cnrm-context-unhealthy", cr("core.cnrm.cloud.google.com/v1beta1",
                                  "ConfigConnectorContext", {"healthy": False,
                                                             "observedGeneration": 1}), D),
    ("ready-false-flag", cr("example.io/v1", "Thing", {"ready": False}), P),
)
def test_generic_phase_words_and_flags(case):
    verdict_of(case)


@table(
    # Crossplane providers' configuration kinds, whatever the provider's group.
    ("upbound-providerconfig", cr(UPB, "ProviderConfig", None, {"credentials": {
        "source": "IRSA"}}), H, "by design"),
    ("crossplane-clusterproviderconfig-users", cr("helm.m.crossplane.io/v1beta1",
                                                  "ClusterProviderConfig", {"users": 3}), H),
    ("crossplane-providerconfig-empty-conditions", cr("helm.m.crossplane.io/v1beta1",
                                                      "ProviderConfig", {"conditions": []}), H),
    ("crossplane-storeconfig", cr("aws.crossplane.io/v1alpha1", "StoreConfig"), H),
    ("crossplane-environmentconfig", cr("apiextensions.crossplane.io/v1beta1",
                                        "EnvironmentConfig"), H),
    # ...but a managed resource or an XRD without status waits for its controller.
    ("upbound-managed-no-status", cr("ec2.aws.upbound.io/v1beta1", "Instance"), P),
    ("crossplane-xrd-no-status", cr("apiextensions.crossplane.io/v1",
                                    "CompositeResourceDefinition"), P),
    ("providerconfig-elsewhere-no-status", cr("example.io/v1", "ProviderConfig"), P),
)
def test_statusless_families(case):
    verdict_of(case)


def test_statusless_family_entries_come_from_the_rules():
    family = HealthRules(statusless_kinds=frozenset({"*.example.io/Setting"}))
    assert check(cr("a.b.example.io/v1", "Setting"), family).status == HEALTHY
    assert check(cr("example.io/v1", "Setting"), family).status == PROGRESSING
    assert check(cr("a.example.org/v1", "Setting"), family).status == PROGRESSING


def test_statusless_kinds_come_from_the_rules():
    monitor = cr("monitoring.coreos.com/v1", "ServiceMonitor")
    assert check(monitor, HealthRules(statusless_kinds=frozenset())).status == PROGRESSING
    widget = cr("example.com/v1", "Widget")
    assert check(widget, HealthRules(statusless_kinds=frozenset({"example.com/Widget"}))) \
        == (HEALTHY, "has no status by design")


# --- a workload's Pods: why it is short of replicas ---------------------------------------------

def named(name: str, p: dict) -> dict:
    return {**p, "metadata": {"name": name}}


UNSCHEDULABLE = pod("Pending", conditions=[cond("PodScheduled", "False", "Unschedulable",
                                                "0/3 nodes are available: 3 Insufficient memory.")])
INIT_FAILED = obj("v1", "Pod", {}, {"phase": "Pending", "initContainerStatuses": [{
    "name": "migrate", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}, None)


@pytest.mark.parametrize("pods, fatal, text", [
    pytest.param([named("a", pod(containers=[RUNNING]))], False, "", id="all-fine"),
    pytest.param([named("b", pod(containers=[waiting("CrashLoopBackOff")])),
                  named("a", UNSCHEDULABLE)], True, "Pod b: container web: CrashLoopBackOff",
                 id="crash-loop-beats-unschedulable"),
    pytest.param([named("a", UNSCHEDULABLE)], False, "Pod a unschedulable: 0/3 nodes",
                 id="unschedulable-names-the-scheduler"),
    pytest.param([named("a", pod("Pending", containers=[waiting("ErrImagePull", "not found")]))],
                 True, "ErrImagePull: not found", id="image-pull"),
    pytest.param([named("a", INIT_FAILED)], True, "init container migrate failed with exit "
                 "code 1", id="init-container-failed"),
    pytest.param([], False, "", id="no-pods"),
])
def test_pods_problem(pods, fatal, text):
    found_fatal, why = pods_problem(pods)
    assert found_fatal is fatal and text in why and bool(why) is bool(text)


def test_unschedulable_and_unbound_claims():
    assert unschedulable(UNSCHEDULABLE).startswith("0/3 nodes")
    assert unschedulable(pod("Pending")) == ""
    with_claims = obj("v1", "Pod", {"volumes": [{"name": "d", "persistentVolumeClaim": {
        "claimName": "data"}}, {"name": "c", "configMap": {"name": "x"}}]}, None, None)
    assert unbound_claims(with_claims, {"data": "Pending"}) == ["data"]
    assert unbound_claims(with_claims, {"data": "Bound"}) == []
