"""Health: is an applied object doing what it was asked to? The entry, Pod diagnosis, a wait.

``check(obj, rules)`` reads only the object itself and answers a ``Verdict``
(Healthy, Progressing, Degraded, Suspended or Unknown, a short message, and the rule
that decided); it never calls the API. Precedence: the spec's custom checks (CEL,
Lua: supplied by others as plain callables), then kstatus's conventions
(``conditions.conventions``), then the built-in rule of the object's ``group/Kind``
(``kinds``), then the generic reading of custom resources (``generic.generic``).
A built-in kind without a rule (ConfigMap, Role...) is Healthy unless a ``Ready``
condition says otherwise, as in kstatus.

``assess`` starts from objects the caller already holds (apply responses, live
reads), so a unit that is already healthy costs no request. A workload whose
controller has seen its spec but which is still short of replicas is diagnosed from
its Pods (one LIST): a container that cannot start makes it Degraded at once,
naming the Pod and the reason; an unschedulable Pod is named with the scheduler's
message and left Progressing. ``recheck`` reads only the given objects again.

``wait`` blocks until healthy; only CRD establishment and Helm hooks use it.
"""

from __future__ import annotations

import time
from typing import Mapping

from shared.errors import HealthError
from workers.apply import conditions, generic, kinds, pods
from workers.apply.discovery import Resource
from workers.apply.kube import Kube
from workers.apply.refs import ObjectRef
from workers.apply.verdict import (
    DEFAULT_RULES, STATUSLESS_KINDS, CustomCheck, Health, HealthRules, Verdict, blocking)

HEALTHY, PROGRESSING, DEGRADED = Health.HEALTHY, Health.PROGRESSING, Health.DEGRADED
SUSPENDED, UNKNOWN = Health.SUSPENDED, Health.UNKNOWN
FAILING = pods.FAILING
pod_problem = pods.pod_problem

__all__ = ["HEALTHY", "PROGRESSING", "DEGRADED", "SUSPENDED", "UNKNOWN", "Health", "Verdict",
           "HealthRules", "CustomCheck", "STATUSLESS_KINDS", "blocking", "check", "unhealthy",
           "describe", "labelled", "problems", "suspended", "pod_problem", "selector_of",
           "diagnose", "assess", "recheck", "wait", "health_error"]


def check(obj: Mapping, rules: HealthRules | None = None) -> Verdict:
    """The verdict for one object as the server returned it (see module doc)."""
    rules = rules or DEFAULT_RULES
    custom = _custom(obj, rules)
    if custom is not None:
        return custom
    key = conditions.kind_key(obj)
    convention = conditions.conventions(obj)
    if convention is not None:
        return convention
    rule = kinds.RULES.get(key)
    if rule is not None:
        return rule(obj, rules).by(f"built-in {key}")
    if conditions.group_of(obj) in conditions.BUILTIN_GROUPS:
        ready = conditions.ready_condition(obj)
        return ready or Verdict(HEALTHY, "no health checks for this kind", f"built-in {key}")
    return generic.generic(obj, rules)


def _custom(obj: Mapping, rules: HealthRules) -> Verdict | None:
    for custom in rules.custom:
        try:
            verdict = custom(obj)
        except Exception as exc:       # a user's check must never break a sync
            name = getattr(custom, "__name__", type(custom).__name__)
            return Verdict(UNKNOWN, f"health check {name} failed: {type(exc).__name__}: {exc}",
                           f"custom: {name}")
        if verdict is not None:
            if not isinstance(verdict, Verdict):
                verdict = Verdict(verdict[0], verdict[1])
            named = verdict.by(f"custom: {getattr(custom, '__name__', 'check')}")
            return _observed_first(obj, named)
    return None


def _observed_first(obj: Mapping, verdict: Verdict) -> Verdict:
    """A settled verdict (Healthy or Degraded) on a status its controller wrote for an
    older spec is not settled yet: Progressing, with the check's word kept. (Argo CD's
    scripts read the status as it stands; gating a rollout on it would pass a stale
    success, or halt a fix on the failure it fixes, before the controller answers.)"""
    if verdict.status not in (HEALTHY, DEGRADED):
        return verdict
    generation = (obj.get("metadata") or {}).get("generation")
    observed = conditions.status_of(obj).get("observedGeneration")
    if type(generation) is not int or type(observed) is not int or observed >= generation:
        return verdict
    return Verdict(PROGRESSING, f"its controller has not observed generation {generation} yet "
                                f"(the status is of {observed}; the check says "
                                f"{verdict.status}: {verdict.message})", verdict.rule)


def unhealthy(objects: Mapping[ObjectRef, Mapping],
              rules: HealthRules | None = None) -> dict[ObjectRef, Verdict]:
    """The objects whose verdicts keep their unit from Ready, with those verdicts (pure)."""
    rules = rules or DEFAULT_RULES
    verdicts = {ref: check(obj, rules) for ref, obj in objects.items()}
    return {ref: v for ref, v in verdicts.items() if blocking(v, rules)}


def labelled(verdict: tuple[str, str]) -> str:
    """The verdict's message with the rule that decided (``3/6 ready [built-in
    apps/Deployment]``)."""
    rule = getattr(verdict, "rule", "")
    return f"{verdict[1]} [{rule}]" if rule else verdict[1]


def problems(found: Mapping[ObjectRef, tuple[str, str]]) -> tuple[tuple[ObjectRef, str, str], ...]:
    """``(object, verdict, message [rule])`` per object, by object: what a unit reports."""
    return tuple((ref, str(v[0]), labelled(v)) for ref, v in sorted(found.items()))


def describe(found: Mapping[ObjectRef, tuple[str, str]]) -> list[str]:
    return [f"{ref}: {status}: {text}" for ref, status, text in problems(found)]


def suspended(objects: Mapping[ObjectRef, Mapping],
              rules: HealthRules | None = None) -> tuple[str, ...]:
    """``Deployment/web/web: deployment is paused [...]`` for each object that is Suspended
    without holding its unit back (the status says so; pure)."""
    rules = rules or DEFAULT_RULES
    found = {ref: v for ref, obj in objects.items()
             if (v := check(obj, rules))[0] == SUSPENDED and not blocking(v, rules)}
    return tuple(f"{ref}: {text}" for ref, _, text in problems(found))


def selector_of(obj: Mapping) -> str:
    """The workload's Pod label selector (matchLabels only), or "" when it has none."""
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def diagnose(kube: Kube, obj: Mapping, verdict: Verdict) -> Verdict:
    """A Progressing workload's verdict, naming why its Pods are not Ready: Degraded when
    a container cannot start, still Progressing (with the scheduler's message) when a
    Pod cannot be placed.

    Only workloads whose controller observed the current spec are diagnosed (a rollout
    that was just applied has no new Pods yet); one LIST of Pods by its selector."""
    if verdict[0] != PROGRESSING or conditions.kind_key(obj) not in kinds.WORKLOADS \
            or not _observed(obj):
        return verdict
    selector, meta = selector_of(obj), obj.get("metadata") or {}
    if not selector or not meta.get("namespace"):
        return verdict
    found = kube.list_items(f"/api/v1/namespaces/{meta['namespace']}/pods",
                            label_selector=selector)
    fatal, why = pods.pods_problem(found)
    if not why:
        return verdict
    return Verdict(DEGRADED if fatal else PROGRESSING, f"{verdict[1]}; {why}",
                   (verdict.rule if isinstance(verdict, Verdict) else "") + " + Pods")


def _observed(obj: Mapping) -> bool:
    generation = (obj.get("metadata") or {}).get("generation")
    observed = conditions.status_of(obj).get("observedGeneration")
    return generation is None or (observed is not None and observed >= generation)


def assess(kube: Kube, objects: Mapping[ObjectRef, Mapping],
           rules: HealthRules | None = None) -> dict[ObjectRef, Verdict]:
    """The objects that keep their unit from Ready, with verdicts, Pods diagnosed."""
    return {ref: diagnose(kube, objects[ref], verdict)
            for ref, verdict in unhealthy(objects, rules).items()}


def recheck(kube: Kube, refs: Mapping[ObjectRef, Resource],
            rules: HealthRules | None = None) -> dict[ObjectRef, Verdict]:
    """Read ``refs`` again (only them) and assess them; a missing one is Progressing."""
    found: dict[ObjectRef, Mapping] = {}
    problems: dict[ObjectRef, Verdict] = {}
    for ref, resource in sorted(refs.items()):
        obj = kube.get_or_none(resource.path(ref))
        if obj is None:
            problems[ref] = Verdict(PROGRESSING, "not found", "not found")
        else:
            found[ref] = obj
    return {**problems, **assess(kube, found, rules)}


def wait(kube: Kube, objects: Mapping[ObjectRef, Mapping], resources: Mapping[ObjectRef, Resource],
         *, timeout: float, poll: float = 1.0, rules: HealthRules | None = None) -> None:
    """Return once no object blocks; ``HealthError`` naming the rest after ``timeout``.

    ``objects`` are the current states the caller holds; only the blocking ones are
    read again, every ``poll`` seconds. A Degraded object fails at once: waiting
    longer will not cure a failed Job or an exceeded progress deadline.
    """
    rules = rules or DEFAULT_RULES
    deadline = time.monotonic() + timeout
    problems = unhealthy(objects, rules)
    while problems:
        degraded = {r: v for r, v in problems.items() if v[0] == DEGRADED}
        remaining = deadline - time.monotonic()
        if degraded or remaining <= 0:
            raise health_error(degraded or problems, timeout, timed_out=not degraded)
        time.sleep(min(poll, remaining))
        problems = {ref: verdict for ref in problems
                    if blocking(verdict := _recheck(kube, resources[ref].path(ref), rules),
                                rules)}


def _recheck(kube: Kube, path: str, rules: HealthRules) -> Verdict:
    obj = kube.get_or_none(path)
    return Verdict(PROGRESSING, "not found", "not found") if obj is None else check(obj, rules)


def health_error(problems: Mapping[ObjectRef, tuple[str, str]], timeout: float,
                 *, timed_out: bool) -> HealthError:
    lines = describe(problems)
    head = (f"{len(lines)} object(s) not healthy after {timeout:g}s" if timed_out
            else f"{len(lines)} object(s) degraded")
    return HealthError(head + ":\n  " + "\n  ".join(lines), obj=str(sorted(problems)[0]))
