"""Health: is an applied object doing what it was asked to? Pure checks plus a wait loop.

``check(obj)`` reads only the object itself (generation vs observedGeneration,
replica counts, conditions) and answers Healthy, Progressing or Degraded with a
short message, the way kstatus does; it never calls the API. ``wait`` starts
from objects the caller already holds (apply responses, live reads), so a unit
that is already healthy costs no request, and re-reads only the unhealthy ones
until they are healthy or ``timeout`` passes, then raises ``HealthError`` naming
each one (``Deployment/web/web-app: Progressing: 0/3 replicas available``).
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
