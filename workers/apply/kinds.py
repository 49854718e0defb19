"""Built-in kinds' health rules, keyed by ``group/Kind`` (so a CRD named Deployment in
another group never meets the apps rule). Pure.

Each rule merges kstatus's and Argo CD's reading of the kind; where they disagree
the comment at the rule says which one is followed and why. Every rule runs after
``conditions.conventions`` (deletion, suspend, unobserved generation, Stalled,
Reconciling) has had its say.

The disagreements that remain, measured against the peers' own test cases (kstatus's
``status_compute_test.go``, gitops-engine's ``pkg/health/testdata``), each one case
against one unless noted:

=============================  ===============  ==============  ====================
case                           kstatus          Argo CD         followed
=============================  ===============  ==============  ====================
running Job                    Current          Progressing     Argo CD (hooks wait)
Job with Suspended=True        Current          Suspended       Argo CD
Pod phase Failed               Current          Degraded        Argo CD
HPA ScalingLimited=True        Failed           Healthy         Argo CD (at bounds)
LoadBalancer, no address       Current          Progressing     Argo CD (rules flag)
Ingress, no address            (no case)        Progressing     kstatus (rules flag,
                                                                ``ingress_address``)
Pod Unschedulable, just made   InProgress       (no case)       Degraded (no clock)
ReplicaSet ReplicaFailure      InProgress       (no case)       kstatus
HPA with no status at all      Unknown          (no case)       kstatus
=============================  ===============  ==============  ====================
"""

from __future__ import annotations

import json
from collections import abc
from typing import Callable, Mapping

from workers.apply.conditions import (
    DEGRADED, HEALTHY, PROGRESSING, SUSPENDED, UNKNOWN, condition, conditions_of, integer, is_,
    spec_of, status_of, text)
from workers.apply.pods import pod_health
from workers.apply.verdict import HealthRules, Verdict

Rule = Callable[[Mapping, HealthRules], Verdict]


def _observed(obj: Mapping) -> bool:
    """Workload controllers always report ``observedGeneration``; until one does, the
    controller has not seen the object (kstatus's checkGenerationSet, Argo CD's rule)."""
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status_of(obj).get("observedGeneration")
    return generation is None or (observed is not None and integer(observed) >= integer(generation))


def _unobserved(obj: Mapping, want: int, key: str, word: str) -> str:
    return f"rollout not observed yet ({integer(status_of(obj).get(key))}/{want} replicas {word})"


def deployment(obj: Mapping, rules: HealthRules) -> Verdict:
    want = integer(spec_of(obj).get("replicas", 1), 1)
    if want == 0 and not status_of(obj):
        # nothing to roll out and no controller has written a status yet (a control
        # plane without controllers, or the first moments of a new object): the peers
        # wait for the controller; nothing here would change once it came
        return Verdict(HEALTHY, "scaled to zero")
    if not _observed(obj):
        return Verdict(PROGRESSING, _unobserved(obj, want, "availableReplicas", "available"))
    conditions = conditions_of(obj)
    progressing = condition(conditions, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Verdict(DEGRADED, text(progressing, "progress deadline exceeded"))
    if want == 0:
        return Verdict(HEALTHY, "scaled to zero")
    status = _counts(status_of(obj), "replicas", "updatedReplicas", "availableReplicas",
                     "readyReplicas")
    replicas, updated, available, ready = status
    if updated < want:
        return Verdict(PROGRESSING, f"{updated}/{want} replicas updated")
    if replicas > want or replicas > updated:
        return Verdict(PROGRESSING, f"{replicas - min(want, updated)} old replicas pending "
                                    f"termination")
    if available < want or ready < want:
        return Verdict(PROGRESSING, f"{min(available, ready)}/{want} replicas available")
    # kstatus also wants the controller's own word once it writes conditions: a rollout
    # whose counts are met but whose Progressing reason is not yet NewReplicaSetAvailable
    # (or Available is False) is still settling. Argo CD reads counts only; the more
    # cautious kstatus reading is followed, but only where conditions exist at all.
    available_c = condition(conditions, "Available")
    if available_c is not None and not is_(available_c, "True"):
        return Verdict(PROGRESSING, text(available_c, "Deployment not available"))
    if progressing is not None and not (is_(progressing, "True") and
                                        progressing.get("reason") == "NewReplicaSetAvailable"):
        if spec_of(obj).get("progressDeadlineSeconds") is not None or not is_(progressing, "True"):
            return Verdict(PROGRESSING, text(progressing, "new ReplicaSet not available yet"))
    return Verdict(HEALTHY, f"{ready}/{want} replicas available")


def _counts(status: Mapping, *keys: str) -> list[int]:
    return [integer(status.get(k)) for k in keys]


def statefulset(obj: Mapping, rules: HealthRules) -> Verdict:
    spec, status = spec_of(obj), status_of(obj)
    want = integer(spec.get("replicas", 1), 1)
    if not _observed(obj) or (want and "observedGeneration" not in status):
        return Verdict(PROGRESSING, _unobserved(obj, want, "readyReplicas", "ready"))
    replicas, ready, updated = _counts(status, "replicas", "readyReplicas", "updatedReplicas")
    if replicas < want:
        return Verdict(PROGRESSING, f"{replicas}/{want} replicas created")
    if ready < want:
        return Verdict(PROGRESSING, f"{ready}/{want} replicas ready")
    if replicas > want:
        return Verdict(PROGRESSING, f"{replicas - want} old replicas pending termination")
    strategy = spec.get("updateStrategy") or {}
    # OnDelete: Pods are replaced only when someone deletes them, so a revision
    # mismatch is expected and waiting for it would wait forever (both peers agree).
    if strategy.get("type") == "OnDelete":
        return Verdict(HEALTHY, f"{ready}/{want} replicas ready (OnDelete updates)")
    partition = (strategy.get("rollingUpdate") or {}).get("partition")
    if partition is not None and integer(partition) > 0:
        target = max(want - integer(partition), 0)
        if updated < target:
            return Verdict(PROGRESSING, f"partitioned roll out: {updated}/{target} updated")
        return Verdict(HEALTHY, f"partitioned roll out complete: {updated} updated")
    if "currentReplicas" in status and integer(status["currentReplicas"]) < want \
            and updated < want:
        return Verdict(PROGRESSING, f"{status['currentReplicas']}/{want} replicas current")
    if status.get("currentRevision", "") != status.get("updateRevision", ""):
        return Verdict(PROGRESSING, f"rolling update to revision {status.get('updateRevision')}: "
                                    f"{updated}/{want} updated")
    return Verdict(HEALTHY, f"{ready}/{want} replicas ready")


def daemonset(obj: Mapping, rules: HealthRules) -> Verdict:
    status = status_of(obj)
    want = status.get("desiredNumberScheduled")
    if not _observed(obj) or "observedGeneration" not in status or want is None:
        return Verdict(PROGRESSING, "rollout not observed yet")
    want = integer(want)
    # Argo CD: with OnDelete nothing rolls until Pods are deleted (kstatus has no such case).
    if (spec_of(obj).get("updateStrategy") or {}).get("type") == "OnDelete":
        return Verdict(HEALTHY, f"{integer(status.get('numberAvailable'))}/{want} pods "
                                f"available (OnDelete updates)")
    for key, word in (("currentNumberScheduled", "scheduled"), ("updatedNumberScheduled",
                      "updated"), ("numberAvailable", "available"), ("numberReady", "ready")):
        if key in status or key in ("updatedNumberScheduled", "numberAvailable"):
            if integer(status.get(key)) < want:
                return Verdict(PROGRESSING, f"{integer(status.get(key))}/{want} pods {word}")
    return Verdict(HEALTHY, f"{integer(status.get('numberAvailable'))}/{want} pods available")


def replicaset(obj: Mapping, rules: HealthRules) -> Verdict:
    want = integer(spec_of(obj).get("replicas", 1), 1)
    if not _observed(obj):
        return Verdict(PROGRESSING, "not observed yet")
    # ReplicaFailure (quota, admission): kstatus says InProgress, Argo CD Degraded. kstatus
    # is followed, as the peers' test corpora favour it (only kstatus tests the case): a
    # quota can be raised and a webhook fixed, the controller retries; the message names
    # the cause either way.
    failure = condition(conditions_of(obj), "ReplicaFailure")
    if is_(failure, "True"):
        return Verdict(PROGRESSING, text(failure, "replica failure"))
    status = status_of(obj)
    if "fullyLabeledReplicas" in status and integer(status["fullyLabeledReplicas"]) < want:
        return Verdict(PROGRESSING, f"{status['fullyLabeledReplicas']}/{want} replicas labelled")
    available, ready, replicas = _counts(status, "availableReplicas", "readyReplicas", "replicas")
    if min(available, ready) < want:
        return Verdict(PROGRESSING, f"{min(available, ready)}/{want} replicas available")
    if replicas > want:
        return Verdict(PROGRESSING, f"{replicas - want} replicas pending termination")
    return Verdict(HEALTHY, f"{available}/{want} replicas available")


def job(obj: Mapping, rules: HealthRules) -> Verdict:
    conditions = conditions_of(obj)
    for type_, verdict in (("Failed", DEGRADED), ("FailureTarget", DEGRADED),
                           ("Complete", HEALTHY), ("SuccessCriteriaMet", HEALTHY),
                           ("Suspended", SUSPENDED)):
        found = condition(conditions, type_)
        if is_(found, "True"):
            return Verdict(verdict, text(found, f"job {type_.lower()}"))
    # A running Job: kstatus calls it Current once started, Argo CD Progressing. Argo CD
    # is followed: hooks and waits must not pass a Job that has not finished.
    status = status_of(obj)
    return Verdict(PROGRESSING, f"{integer(status.get('succeeded'))} succeeded, "
                                f"{integer(status.get('active'))} active")


def cronjob(obj: Mapping, rules: HealthRules) -> Verdict:
    """Argo CD's reading (last run failed -> Degraded), except that a CronJob not yet
    scheduled is Healthy as in kstatus: its first run may be a day away."""
    status = status_of(obj)
    scheduled, succeeded = status.get("lastScheduleTime"), status.get("lastSuccessfulTime")
    if not scheduled:
        return Verdict(HEALTHY, "not scheduled yet")
    if status.get("active"):
        return Verdict(HEALTHY, "a job is running")
    if succeeded is None:
        return Verdict(HEALTHY, "never completed successfully yet")
    if str(succeeded) < str(scheduled):
        return Verdict(DEGRADED, "its last job did not complete successfully")
    return Verdict(HEALTHY, "its last job completed successfully")


def pvc(obj: Mapping, rules: HealthRules) -> Verdict:
    """Lost is Degraded (Argo CD; kstatus: InProgress): the volume is gone for good."""
    phase = status_of(obj).get("phase")
    if phase == "Bound":
        return Verdict(HEALTHY, "bound")
    if phase == "Lost":
        return Verdict(DEGRADED, "its volume is lost")
    return Verdict(PROGRESSING, f"not bound ({phase or 'no phase yet'})")


def service(obj: Mapping, rules: HealthRules) -> Verdict:
    spec = spec_of(obj)
    if spec.get("type") != "LoadBalancer":
        return Verdict(HEALTHY, "service")
    ingress = ((status_of(obj).get("loadBalancer") or {}).get("ingress")) or []
    if ingress:
        return Verdict(HEALTHY, "load balancer address assigned")
    if rules.load_balancer_address or not spec.get("clusterIP"):
        return Verdict(PROGRESSING, "waiting for a load balancer address")
    return Verdict(HEALTHY, "load balancer (address not awaited)")


def ingress(obj: Mapping, rules: HealthRules) -> Verdict:
    if ((status_of(obj).get("loadBalancer") or {}).get("ingress")) or not rules.ingress_address:
        return Verdict(HEALTHY, "ingress")
    return Verdict(PROGRESSING, "waiting for an address")


def apiservice(obj: Mapping, rules: HealthRules) -> Verdict:
    """Argo CD: Available False is Progressing (the backing Service may still start)."""
    available = condition(conditions_of(obj), "Available")
    if available is None:
        return Verdict(PROGRESSING, "waiting to be processed")
    message = f"{available.get('reason', '')}: {available.get('message', '')}".strip(": ")
    return Verdict(HEALTHY if is_(available, "True") else PROGRESSING, message)


_HPA_FAILED = {"AbleToScale": ("FailedGetScale", "FailedUpdateScale"),
               "ScalingActive": ("FailedGetResourceMetric", "FailedGetObjectMetric",
                                 "FailedGetPodsMetric", "FailedGetExternalMetric",
                                 "FailedComputeMetricsReplicas", "InvalidSelector",
                                 "FailedGetContainerResourceMetric", "InvalidMetricSourceType")}


def hpa(obj: Mapping, rules: HealthRules) -> Verdict:
    """Argo CD's reading; ScalingLimited True (at min or max replicas) is normal work.
    With no status at all the verdict is Unknown, as in kstatus (Argo CD's tests only
    cover an HPA with a status but no conditions, Progressing): nothing is known yet."""
    if not status_of(obj) and not ((obj.get("metadata") or {}).get("annotations") or {}).get(
            "autoscaling.alpha.kubernetes.io/conditions"):
        return Verdict(UNKNOWN, "no status reported yet")
    conditions = conditions_of(obj)
    if not conditions:
        raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(
            "autoscaling.alpha.kubernetes.io/conditions")
        try:
            conditions = [c for c in json.loads(raw) if isinstance(c, abc.Mapping)] if raw else []
        except (ValueError, TypeError):
            conditions = []
    for c in conditions:
        if c.get("reason") in _HPA_FAILED.get(str(c.get("type")), ()):
            return Verdict(DEGRADED, text(c, "cannot scale"))
    for c in conditions:
        if c.get("type") in ("AbleToScale", "ScalingLimited") and is_(c, "True"):
            return Verdict(HEALTHY, text(c, "able to scale"))
    return Verdict(PROGRESSING, "waiting to autoscale")


def pdb(obj: Mapping, rules: HealthRules) -> Verdict:
    status = status_of(obj)
    healthy, desired = integer(status.get("currentHealthy")), integer(status.get("desiredHealthy"))
    if healthy < desired:
        return Verdict(PROGRESSING, f"budget not met: {healthy}/{desired} healthy")
    return Verdict(HEALTHY, f"budget met: {healthy}/{desired} healthy")


def crd(obj: Mapping, rules: HealthRules) -> Verdict:
    """Established False while ``Installing`` is Progressing (kstatus; Argo CD says
    Degraded): a CRD is established within seconds and ``wait`` must not fail on it."""
    conditions = conditions_of(obj)
    names = condition(conditions, "NamesAccepted")
    if is_(names, "False"):
        return Verdict(DEGRADED, text(names, "names not accepted"))
    schema = condition(conditions, "NonStructuralSchema")
    if is_(schema, "True"):
        return Verdict(DEGRADED, "schema violations: " + text(schema))
    established = condition(conditions, "Established")
    if is_(established, "True"):
        return Verdict(HEALTHY, "established")
    if is_(established, "False") and established and established.get("reason") != "Installing":
        return Verdict(DEGRADED, text(established, "not established"))
    return Verdict(PROGRESSING, "not established yet")


def workflow(obj: Mapping, rules: HealthRules) -> Verdict:
    """Argo Workflows' Workflow, built into gitops-engine: Running is not done yet."""
    status = status_of(obj)
    phase, message = status.get("phase") or "", status.get("message") or ""
    if phase in ("", "Pending", "Running"):
        return Verdict(PROGRESSING, message or phase or "not started")
    if phase == "Succeeded":
        return Verdict(HEALTHY, message or "succeeded")
    if phase in ("Failed", "Error"):
        return Verdict(DEGRADED, message or phase.lower())
    return Verdict(PROGRESSING, message or f"phase {phase}")


def rollout(obj: Mapping, rules: HealthRules) -> Verdict:
    """Argo Rollouts' Rollout, as Argo CD ships its check: an invalid spec, an abort or
    a timeout is Degraded; v1.0+ states its phase (Healthy/Progressing/Degraded/Paused);
    else a pause (by the user, a step, or an old blue-green preview) is Suspended, and
    replica counts and the stable ReplicaSet must catch up with the current pod hash.
    Rollouts before v1.0 wrote a hash as ``observedGeneration``; it is no generation."""
    status, spec = status_of(obj), spec_of(obj)
    for c in conditions_of(obj):
        if (c.get("type") == "InvalidSpec" and is_(c, "True")) or (
                c.get("type") == "Progressing" and c.get("reason") in (
                    "RolloutAborted", "ProgressDeadlineExceeded")):
            return Verdict(DEGRADED, text(c, "rollout failed"))
    if "observedGeneration" not in status:
        return Verdict(PROGRESSING, "waiting for the rollout spec to be observed")
    # Argo Rollouts v1.0+ says it in status.phase (what Argo CD's check reads first).
    phase = _ROLLOUT_PHASES.get(str(status.get("phase") or ""))
    if phase is not None:
        return Verdict(phase, status.get("message") or f"Rollout is {status['phase']}")
    if status.get("pauseConditions") or spec.get("paused") is True \
            or status.get("verifyingPreview") is True:      # pre-v0.6 blue-green preview
        return Verdict(SUSPENDED, "Rollout is paused")
    pod_hash = status.get("currentPodHash")
    if pod_hash is None:
        return Verdict(PROGRESSING, "status not reconciled yet")
    want = integer(spec.get("replicas", 1), 1)
    replicas, updated, available = _counts(status, "replicas", "updatedReplicas",
                                           "availableReplicas")
    if updated < want:
        return Verdict(PROGRESSING, f"{updated}/{want} replicas updated")
    if available < updated:
        return Verdict(PROGRESSING, f"{available}/{updated} updated replicas available")
    strategy = spec.get("strategy") or {}
    stable = status.get("stableRS") or (status.get("canary") or {}).get("stableRS") or ""
    if strategy.get("blueGreen") is not None:
        active = (status.get("blueGreen") or {}).get("activeSelector") \
            or status.get("activeSelector")                 # before v0.6
        if active != pod_hash:
            return Verdict(PROGRESSING, "active service cutover pending")
        if stable and stable != pod_hash:
            return Verdict(PROGRESSING, "waiting for analysis to complete")
    elif strategy.get("canary") is not None:
        if replicas > updated:
            return Verdict(PROGRESSING, f"{replicas - updated} old replicas pending termination")
        if stable != pod_hash:
            return Verdict(PROGRESSING, "waiting for the rollout to finish its steps")
    return Verdict(HEALTHY, status.get("message") or "rolled out")


_ROLLOUT_PHASES = {"Healthy": HEALTHY, "Progressing": PROGRESSING, "Degraded": DEGRADED,
                   "Paused": SUSPENDED}


def _pod(obj: Mapping, rules: HealthRules) -> Verdict:
    return pod_health(obj)


RULES: dict[str, Rule] = {
    "apps/Deployment": deployment, "extensions/Deployment": deployment,
    "apps/StatefulSet": statefulset, "apps/DaemonSet": daemonset,
    "extensions/DaemonSet": daemonset, "apps/ReplicaSet": replicaset,
    "extensions/ReplicaSet": replicaset, "batch/Job": job, "batch/CronJob": cronjob,
    "Pod": _pod, "PersistentVolumeClaim": pvc, "Service": service,
    "networking.k8s.io/Ingress": ingress, "extensions/Ingress": ingress,
    "apiregistration.k8s.io/APIService": apiservice,
    "autoscaling/HorizontalPodAutoscaler": hpa, "policy/PodDisruptionBudget": pdb,
    "apiextensions.k8s.io/CustomResourceDefinition": crd, "argoproj.io/Workflow": workflow,
    "argoproj.io/Rollout": rollout,
}
WORKLOADS = ("apps/Deployment", "apps/StatefulSet", "apps/DaemonSet", "apps/ReplicaSet",
             "extensions/Deployment", "extensions/DaemonSet", "extensions/ReplicaSet")
