"""Health: is an applied object doing what it was asked to? Pure checks, Pod diagnosis, a wait.

``check(obj)`` reads only the object itself (generation vs observedGeneration,
replica counts, conditions) and answers Healthy, Progressing or Degraded with a
short message, the way kstatus does; it never calls the API.

``assess`` starts from objects the caller already holds (apply responses, live
reads), so a unit that is already healthy costs no request. A workload whose
controller has seen its spec but which is still short of available replicas is
diagnosed from its Pods (one LIST): a container in CrashLoopBackOff or
ImagePullBackOff makes it Degraded at once, naming the Pod and the reason;
waiting longer will not cure it. ``recheck`` reads only the given objects again
(the follow-up of a unit that was Progressing).

``wait`` blocks until healthy; only CRD establishment uses it (a CRD is
established within seconds, and its custom resources cannot be applied before).
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

from shared.errors import HealthError
from workers.apply.discovery import Resource
from workers.apply.kube import Kube
from workers.apply.refs import ObjectRef

HEALTHY, PROGRESSING, DEGRADED = "Healthy", "Progressing", "Degraded"
Verdict = tuple[str, str]


def check(obj: Mapping) -> Verdict:
    """(Healthy | Progressing | Degraded, message) for one object as the server returned it."""
    kind = obj.get("kind", "")
    checker = _CHECKS.get(kind, _conditions)
    return checker(obj)


def _status(obj: Mapping) -> Mapping:
    return obj.get("status") or {}


def _condition(obj: Mapping, type_: str) -> Mapping | None:
    return next((c for c in _status(obj).get("conditions") or [] if c.get("type") == type_), None)


def _observed(obj: Mapping, observed: int | None = None, *, required: bool = True) -> bool:
    """The controller has seen the current generation. Workload controllers always
    report ``observedGeneration``; for other kinds (as in kstatus) only a reported
    one can say "not yet"."""
    generation = (obj.get("metadata") or {}).get("generation")
    if observed is None:
        observed = _status(obj).get("observedGeneration")
    if generation is None or observed is None and not required:
        return True
    return observed is not None and observed >= generation


def _deployment(obj: Mapping) -> Verdict:
    want = (obj.get("spec") or {}).get("replicas", 1)
    if want == 0:
        return HEALTHY, "scaled to zero"
    progressing = _condition(obj, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return DEGRADED, progressing.get("message") or "progress deadline exceeded"
    return _replicas(obj, want, "updatedReplicas", "availableReplicas", "available")


def _statefulset(obj: Mapping) -> Verdict:
    want = (obj.get("spec") or {}).get("replicas", 1)
    if want == 0:
        return HEALTHY, "scaled to zero"
    return _replicas(obj, want, "updatedReplicas", "readyReplicas", "ready")


def _daemonset(obj: Mapping) -> Verdict:
    status = _status(obj)
    want = status.get("desiredNumberScheduled")
    if not _observed(obj) or want is None:
        return PROGRESSING, "rollout not observed yet"
    updated, available = status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0)
    if updated < want or available < want:
        return PROGRESSING, f"{available}/{want} pods available, {updated} updated"
    return HEALTHY, f"{available}/{want} pods available"


def _replicas(obj: Mapping, want: int, updated_key: str, ready_key: str, word: str) -> Verdict:
    status = _status(obj)
    if not _observed(obj):
        return PROGRESSING, f"rollout not observed yet ({status.get(ready_key, 0)}/{want} " \
                            f"replicas {word})"
    updated, ready = status.get(updated_key, 0), status.get(ready_key, 0)
    if updated < want:
        return PROGRESSING, f"{updated}/{want} replicas updated"
    if ready < want:
        return PROGRESSING, f"{ready}/{want} replicas {word}"
    if status.get("replicas", want) > want:
        return PROGRESSING, f"{status['replicas'] - want} old replicas pending termination"
    return HEALTHY, f"{ready}/{want} replicas {word}"


def _job(obj: Mapping) -> Verdict:
    for type_, verdict in (("Failed", DEGRADED), ("Complete", HEALTHY)):
        condition = _condition(obj, type_)
        if condition and condition.get("status") == "True":
            return verdict, condition.get("message") or f"job {type_.lower()}"
    return PROGRESSING, f"{_status(obj).get('succeeded', 0)} succeeded, " \
                        f"{_status(obj).get('active', 0)} active"


def _crd(obj: Mapping) -> Verdict:
    names = _condition(obj, "NamesAccepted")
    if names and names.get("status") == "False":
        return DEGRADED, names.get("message") or "names not accepted"
    established = _condition(obj, "Established")
    if established and established.get("status") == "True":
        return HEALTHY, "established"
    return PROGRESSING, "not established yet"


def _conditions(obj: Mapping) -> Verdict:
    """Anything with a ``Ready`` condition follows it; everything else is healthy."""
    ready = _condition(obj, "Ready")
    if ready is None:
        return HEALTHY, "no health checks for this kind" if not _status(obj) else "current"
    if ready.get("status") == "True" and _observed(obj, required=False) and \
            _observed(obj, ready.get("observedGeneration"), required=False):
        return HEALTHY, ready.get("message") or "ready"
    if ready.get("status") == "True":
        return PROGRESSING, "new generation not observed yet"
    return PROGRESSING, ready.get("message") or ready.get("reason") or "not ready"


_CHECKS: dict[str, Callable[[Mapping], Verdict]] = {
    "Deployment": _deployment, "StatefulSet": _statefulset, "DaemonSet": _daemonset,
    "Job": _job, "CustomResourceDefinition": _crd,
}


def unhealthy(objects: Mapping[ObjectRef, Mapping]) -> dict[ObjectRef, Verdict]:
    """The objects that are not Healthy, with their verdicts (pure)."""
    verdicts = {ref: check(obj) for ref, obj in objects.items()}
    return {ref: v for ref, v in verdicts.items() if v[0] != HEALTHY}


def describe(problems: Mapping[ObjectRef, Verdict]) -> list[str]:
    return [f"{ref}: {status}: {message}" for ref, (status, message) in sorted(problems.items())]


# A container waiting for one of these reasons will not become Ready by waiting longer.
FAILING = ("CrashLoopBackOff", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
           "CreateContainerConfigError", "CreateContainerError", "RunContainerError")
_WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def pod_problem(pod: Mapping) -> str:
    """Why a Pod's container cannot become Ready (``container web: CrashLoopBackOff, 4
    restarts: back-off 40s``), or "" (pure)."""
    status = _status(pod)
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason in FAILING:
            restarts = cs.get("restartCount") or 0
            text = f"container {cs.get('name', '?')}: {reason}"
            if restarts:
                text += f", {restarts} restart{'s' if restarts != 1 else ''}"
            detail = (waiting.get("message") or "").strip().splitlines()
            return text + (f": {detail[0][:160]}" if detail else "")
    return ""


def selector_of(obj: Mapping) -> str:
    """The workload's Pod label selector (matchLabels only), or "" when it has none."""
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def diagnose(kube: Kube, obj: Mapping, verdict: Verdict) -> Verdict:
    """A Progressing workload's verdict, Degraded when one of its Pods cannot become Ready.

    Only workloads whose controller observed the current spec are diagnosed (a rollout
    that was just applied has no new Pods yet); one LIST of Pods by its selector."""
    if verdict[0] != PROGRESSING or obj.get("kind") not in _WORKLOADS or not _observed(obj):
        return verdict
    selector, meta = selector_of(obj), obj.get("metadata") or {}
    if not selector or not meta.get("namespace"):
        return verdict
    pods = kube.list_items(f"/api/v1/namespaces/{meta['namespace']}/pods",
                           label_selector=selector)
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        problem = pod_problem(pod)
        if problem:
            name = (pod.get("metadata") or {}).get("name", "?")
            return DEGRADED, f"{verdict[1]}; Pod {name}: {problem}"
    return verdict


def assess(kube: Kube, objects: Mapping[ObjectRef, Mapping]) -> dict[ObjectRef, Verdict]:
    """The objects that are not Healthy, with verdicts, Pods diagnosed where it helps."""
    return {ref: diagnose(kube, objects[ref], verdict)
            for ref, verdict in unhealthy(objects).items()}


def recheck(kube: Kube, refs: Mapping[ObjectRef, Resource]) -> dict[ObjectRef, Verdict]:
    """Read ``refs`` again (only them) and assess them; a missing one is Progressing."""
    found: dict[ObjectRef, Mapping] = {}
    problems: dict[ObjectRef, Verdict] = {}
    for ref, resource in sorted(refs.items()):
        obj = kube.get_or_none(resource.path(ref))
        if obj is None:
            problems[ref] = (PROGRESSING, "not found")
        else:
            found[ref] = obj
    return {**problems, **assess(kube, found)}


def wait(kube: Kube, objects: Mapping[ObjectRef, Mapping], resources: Mapping[ObjectRef, Resource],
         *, timeout: float, poll: float = 1.0) -> None:
    """Return once every object is Healthy; ``HealthError`` naming the rest after ``timeout``.

    ``objects`` are the current states the caller holds; only the unhealthy ones are
    read again, every ``poll`` seconds. A Degraded object fails at once: waiting
    longer will not cure a failed Job or an exceeded progress deadline.
    """
    deadline = time.monotonic() + timeout
    problems = unhealthy(objects)
    while problems:
        degraded = {r: v for r, v in problems.items() if v[0] == DEGRADED}
        remaining = deadline - time.monotonic()
        if degraded or remaining <= 0:
            raise health_error(degraded or problems, timeout, timed_out=not degraded)
        time.sleep(min(poll, remaining))
        problems = {ref: verdict for ref in problems
                    if (verdict := _recheck(kube, resources[ref].path(ref)))[0] != HEALTHY}


def _recheck(kube: Kube, path: str) -> Verdict:
    obj = kube.get_or_none(path)
    return (PROGRESSING, "not found") if obj is None else check(obj)


def health_error(problems: Mapping[ObjectRef, Verdict], timeout: float,
                 *, timed_out: bool) -> HealthError:
    lines = describe(problems)
    head = (f"{len(lines)} object(s) not healthy after {timeout:g}s" if timed_out
            else f"{len(lines)} object(s) degraded")
    return HealthError(head + ":\n  " + "\n  ".join(lines), obj=str(sorted(problems)[0]))
