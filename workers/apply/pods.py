"""Pods: the Pod kind's verdict, and why a workload's Pods are not becoming Ready. Pure.

``pod_health`` merges the peers' readings: Argo CD's container waiting reasons
(``Err*``, ``*Error``, ``*BackOff``) make a Pod that restarts Degraded in any phase,
kstatus's ``PodScheduled=False/Unschedulable`` makes a Pending Pod Degraded, and a
Pod with restartPolicy OnFailure or Never (a hook, a Job's Pod) stays Progressing
until it has Succeeded, as in Argo CD. Argo CD's ``argocd.argoproj.io/ignore-restart-policy:
"true"`` annotation reads such a Pod as a long-running one (Healthy once Ready, Degraded on
a failing container), except on hook Pods, which always run to completion.

``pod_problem`` and ``pods_problem`` read the Pods of a workload that is short of
replicas (the caller lists them, see ``health.diagnose``): a container that cannot
start is fatal (waiting will not cure it); an unschedulable Pod or an unbound claim
is named but left Progressing, since an autoscaler or a provisioner may still cure it.
"""

from __future__ import annotations

from collections import abc
from typing import Iterable, Mapping

from workers.apply.conditions import condition, conditions_of, is_, spec_of, status_of, text
from workers.apply.verdict import Health, Verdict

# A container waiting for one of these reasons will not become Ready by waiting longer.
FAILING = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
           "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError",
           "RunContainerError", "PreStartHookError", "PostStartHookError")
RULE = "built-in Pod"
IGNORE_RESTART_POLICY = "argocd.argoproj.io/ignore-restart-policy"
_HOOKS = ("argocd.argoproj.io/hook", "helm.sh/hook")


def failing_reason(reason: str) -> bool:
    """Argo CD's test for a waiting reason that is a failure, plus kstatus's list."""
    return reason in FAILING or reason.startswith("Err") or reason.endswith(("Error", "BackOff"))


def _statuses(pod: Mapping, *, init: bool = True) -> list[Mapping]:
    status = status_of(pod)
    found = list(status.get("initContainerStatuses") or []) if init else []
    return [cs for cs in found + list(status.get("containerStatuses") or [])
            if isinstance(cs, abc.Mapping)]


def pod_problem(pod: Mapping) -> str:
    """Why a Pod's container cannot become Ready (``container web: CrashLoopBackOff, 4
    restarts: back-off 40s``), or "" (pure)."""
    for cs in _statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        if failing_reason(reason):
            restarts = cs.get("restartCount") or 0
            line = f"container {cs.get('name', '?')}: {reason}"
            if restarts:
                line += f", {restarts} restart{'s' if restarts != 1 else ''}"
            detail = (waiting.get("message") or "").strip().splitlines()
            return line + (f": {detail[0][:160]}" if detail else "")
    for cs in (status_of(pod).get("initContainerStatuses") or []):
        terminated = (cs.get("state") or {}).get("terminated") or {}
        if terminated and terminated.get("exitCode", 0) != 0:
            return (f"init container {cs.get('name', '?')} failed with exit code "
                    f"{terminated.get('exitCode')}" + (f" ({terminated['reason']})"
                                                       if terminated.get("reason") else ""))
    return ""


def unschedulable(pod: Mapping) -> str:
    """The scheduler's message for a Pod it could not place, or ""."""
    scheduled = condition(conditions_of(pod), "PodScheduled")
    if is_(scheduled, "False") and (scheduled or {}).get("reason") == "Unschedulable":
        return text(scheduled, "Unschedulable")
    return ""


def unbound_claims(pod: Mapping, claims: Mapping[str, str]) -> list[str]:
    """The Pod's PersistentVolumeClaims that are not Bound, given claim name -> phase."""
    names = [((v.get("persistentVolumeClaim") or {}).get("claimName"))
             for v in spec_of(pod).get("volumes") or [] if isinstance(v, abc.Mapping)]
    return [n for n in names if n and claims.get(n, "Pending") != "Bound"]


def pods_problem(pods: Iterable[Mapping]) -> tuple[bool, str]:
    """(fatal, why) for a workload's Pods: the first container failure is fatal; else
    the first unschedulable Pod, named with the scheduler's message; else (False, "")."""
    ordered = sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name", ""))
    for pod in ordered:
        problem = pod_problem(pod)
        if problem:
            return True, f"Pod {(pod.get('metadata') or {}).get('name', '?')}: {problem}"
    for pod in ordered:
        why = unschedulable(pod)
        if why:
            return False, f"Pod {(pod.get('metadata') or {}).get('name', '?')} unschedulable: {why}"
    return False, ""


def pod_health(pod: Mapping) -> Verdict:
    """The Pod kind's verdict (see module doc)."""
    status = status_of(pod)
    phase, message = status.get("phase") or "", (status.get("message") or "").strip()
    policy = _restart_policy(pod)
    if policy == "Always" and phase not in ("Succeeded", "Failed"):
        waiting = [cs for cs in _statuses(pod, init=False)
                   if failing_reason(((cs.get("state") or {}).get("waiting") or {})
                                     .get("reason") or "")]
        if waiting:
            return Verdict(Health.DEGRADED, pod_problem(pod) or message, RULE)
    if phase == "Succeeded":
        return Verdict(Health.HEALTHY, message or "completed", RULE)
    if phase == "Failed":
        return Verdict(Health.DEGRADED, message or _failure(pod) or "failed", RULE)
    if phase == "Running":
        return _running(pod, policy, message)
    if phase == "Pending":
        why = unschedulable(pod)
        if why:
            return Verdict(Health.DEGRADED, f"unschedulable: {why}", RULE)
        return Verdict(Health.PROGRESSING, message or _waiting(pod) or "pending", RULE)
    if not phase:
        return Verdict(Health.PROGRESSING, "not observed yet", RULE)
    return Verdict(Health.UNKNOWN, message or f"phase {phase}", RULE)


def _restart_policy(pod: Mapping) -> str:
    policy = spec_of(pod).get("restartPolicy") or "Always"      # the API server's default
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(IGNORE_RESTART_POLICY, "")).lower() == "true" \
            and not any(annotations.get(hook) for hook in _HOOKS):
        return "Always"
    return policy


def _running(pod: Mapping, policy: str, message: str) -> Verdict:
    if policy != "Always":
        return Verdict(Health.PROGRESSING, message or "running to completion", RULE)
    if is_(condition(conditions_of(pod), "Ready"), "True"):
        return Verdict(Health.HEALTHY, message or "ready", RULE)
    restarted = [cs for cs in _statuses(pod, init=False)
                 if ((cs.get("lastState") or {}).get("terminated"))]
    if restarted:
        return Verdict(Health.DEGRADED, message or _failure(pod, last=True)
                       or f"container {restarted[0].get('name', '?')} restarted", RULE)
    return Verdict(Health.PROGRESSING, message or "running, not ready", RULE)


def _failure(pod: Mapping, *, last: bool = False) -> str:
    for cs in _statuses(pod):
        terminated = (cs.get("lastState" if last else "state") or {}).get("terminated") or {}
        if terminated.get("message"):
            return str(terminated["message"]).strip()
        if terminated.get("reason") == "OOMKilled":
            return "OOMKilled"
        if terminated.get("exitCode"):
            return f"container {cs.get('name', '?')!r} failed with exit code " \
                   f"{terminated['exitCode']}"
    return ""


def _waiting(pod: Mapping) -> str:
    for cs in _statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return f"container {cs.get('name', '?')}: {waiting['reason']}"
    return ""
