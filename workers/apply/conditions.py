"""Reading health from what any controller writes: the accessors every rule uses and
kstatus's conventions. Pure.

``conventions`` runs before any kind rule, as kstatus's generic properties do:
deletion, a suspend flag, an unobserved generation, ``Stalled`` and ``Reconciling``
(with one refinement from Flux: ``Reconciling`` True with a reason ending in
``WithRetry`` while ``Ready`` is False is a failure being retried, Degraded).
The generic reading of custom resources is ``workers/apply/generic.py``.
"""

from __future__ import annotations

from collections import abc
from typing import Any, Iterable, Mapping

from workers.apply.verdict import Health, Verdict

HEALTHY, PROGRESSING, DEGRADED = Health.HEALTHY, Health.PROGRESSING, Health.DEGRADED
SUSPENDED, UNKNOWN = Health.SUSPENDED, Health.UNKNOWN

# API groups served by Kubernetes itself; anything else is a custom resource.
BUILTIN_GROUPS = frozenset({
    "", "apps", "batch", "extensions", "policy", "autoscaling", "networking.k8s.io",
    "rbac.authorization.k8s.io", "storage.k8s.io", "apiextensions.k8s.io",
    "apiregistration.k8s.io", "admissionregistration.k8s.io", "scheduling.k8s.io",
    "coordination.k8s.io", "discovery.k8s.io", "node.k8s.io", "certificates.k8s.io",
    "events.k8s.io", "flowcontrol.apiserver.k8s.io", "resource.k8s.io",
    "authentication.k8s.io", "authorization.k8s.io", "internal.apiserver.k8s.io",
    "storagemigration.k8s.io",
})


def group_of(obj: Mapping) -> str:
    api_version = str(obj.get("apiVersion") or "")
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def kind_key(obj: Mapping) -> str:
    """``apps/Deployment``, ``Pod`` (the core group has no prefix), as kstatus keys them."""
    group, kind = group_of(obj), str(obj.get("kind") or "")
    return f"{group}/{kind}" if group else kind


_EMPTY: Mapping = {}


def _mapping(value: Any) -> Mapping:
    # objects come as dicts from JSON: the exact-type test first (an abc check costs more)
    return value if type(value) is dict or isinstance(value, abc.Mapping) else _EMPTY


def status_of(obj: Mapping) -> Mapping:
    return _mapping(obj.get("status"))


def spec_of(obj: Mapping) -> Mapping:
    return _mapping(obj.get("spec"))


def conditions_of(obj: Mapping) -> list[Mapping]:
    found = status_of(obj).get("conditions")
    if type(found) is not list:
        return []
    return [c for c in found if type(c) is dict or isinstance(c, abc.Mapping)]


def condition(conditions: Iterable[Mapping], type_: str) -> Mapping | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_(c: Mapping | None, value: str) -> bool:
    return c is not None and str(c.get("status", "")).lower() == value.lower()


def text(c: Mapping | None, default: str = "") -> str:
    """A condition's message, else its reason, else ``default``."""
    if not c:
        return default
    return str(c.get("message") or c.get("reason") or default).strip()


def integer(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def conventions(obj: Mapping) -> Verdict | None:
    """kstatus's generic properties (and Argo CD's deletion and suspend checks), or None."""
    meta, spec = obj.get("metadata") or {}, spec_of(obj)
    if meta.get("deletionTimestamp"):
        return Verdict(PROGRESSING, "being deleted", "kstatus: deletionTimestamp")
    if spec.get("suspend") is True or spec.get("paused") is True:
        return Verdict(SUSPENDED, f"{obj.get('kind', 'object')} is suspended", "generic: suspend")
    generation, observed = meta.get("generation"), status_of(obj).get("observedGeneration")
    # Only a number is a generation: Argo Rollouts before v1.0 wrote a pod-template hash.
    if generation is not None and integer(observed, -1) >= 0 \
            and integer(observed) < integer(generation):
        return Verdict(PROGRESSING, f"generation {generation} not observed yet (observed "
                                    f"{observed})", "kstatus: observedGeneration")
    conditions = conditions_of(obj)
    for c in conditions:
        if c.get("type") == "Stalled" and is_(c, "True"):
            return Verdict(DEGRADED, text(c, "stalled"), "kstatus: Stalled")
        if c.get("type") == "Reconciling" and is_(c, "True"):
            ready = condition(conditions, "Ready")
            if str(c.get("reason", "")).endswith("WithRetry") and is_(ready, "False"):
                return Verdict(DEGRADED, text(ready, "retrying after a failure"),
                               "kstatus: Reconciling (retrying a failure)")
            return Verdict(PROGRESSING, text(c, "reconciling"), "kstatus: Reconciling")
    return None


def ready_condition(obj: Mapping) -> Verdict | None:
    """kstatus's last resort for any kind: a ``Ready`` condition, True or not."""
    ready = condition(conditions_of(obj), "Ready")
    if ready is None:
        return None
    if is_(ready, "True"):
        return Verdict(HEALTHY, text(ready, "ready"), "kstatus: Ready")
    return Verdict(PROGRESSING, text(ready, "not ready"), "kstatus: Ready")
