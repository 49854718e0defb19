"""What an application may touch: its namespaces, its kinds, never fleetsync's own. Pure.

Checked on the desired objects once their scope is known (after discovery and the
reads, before any dry-run or write), so a render that breaks a rule is refused
whole: nothing is written, and the error names every object and the rule.

- ``fleetsync-system`` is fleetsync's (the inventories live there): no
  application may render an object in it, or the Namespace itself.
- ``allowedNamespaces``: namespaced objects only in those namespaces, Namespace
  objects only of those names, and no other cluster-scoped object.
- ``allowedKinds`` / ``deniedKinds``: ``Kind`` or ``group/Kind`` (``group/*`` for
  every kind of a group; the core group is ``core``).

``never_pruned`` names the Namespaces no prune ever deletes, whoever created them.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from shared.errors import ApplyError
from shared.spec.model import Application
from workers.apply.refs import ObjectRef, is_namespace

RESERVED = "fleetsync-system"
NEVER_PRUNED = frozenset({"kube-system", "kube-public", "kube-node-lease", "default", RESERVED})


class PolicyError(ApplyError):
    """The render breaks the application's policy; nothing was written."""

    reason = "PolicyViolation"


def never_pruned(ref: ObjectRef) -> bool:
    return is_namespace(ref) and ref.name in NEVER_PRUNED


def kind_matches(ref: ObjectRef, patterns: Iterable[str]) -> bool:
    group = ref.group or "core"
    for pattern in patterns:
        want_group, _, want_kind = pattern.rpartition("/")
        if want_kind in (ref.kind, "*") and want_group in ("", group):
            return True
    return False


def violations(app: Application, refs: Iterable[ObjectRef],
               namespaced: Mapping[ObjectRef, bool]) -> list[str]:
    """One line per object that breaks a rule (``Kind/ns/name: why``), in order."""
    lines = []
    for ref in sorted(refs):
        why = _why(app, ref, namespaced.get(ref, bool(ref.namespace)))
        if why:
            lines.append(f"{ref}: {why}")
    return lines


def _why(app: Application, ref: ObjectRef, namespaced: bool) -> str:
    if ref.namespace == RESERVED or is_namespace(ref) and ref.name == RESERVED:
        return f"namespace {RESERVED} is reserved for fleetsync's own state"
    if app.denied_kinds and kind_matches(ref, app.denied_kinds):
        return f"kind {ref.kind} is in deniedKinds {list(app.denied_kinds)}"
    if app.allowed_kinds and not kind_matches(ref, app.allowed_kinds):
        return f"kind {ref.kind} is not in allowedKinds {list(app.allowed_kinds)}"
    allowed = app.allowed_namespaces
    if allowed:
        if is_namespace(ref):
            if ref.name not in allowed:
                return f"namespace {ref.name} is not in allowedNamespaces {list(allowed)}"
        elif not namespaced:
            return ("cluster-scoped objects are not allowed for an application limited to "
                    f"allowedNamespaces {list(allowed)}")
        elif ref.namespace not in allowed:
            return f"namespace {ref.namespace} is not in allowedNamespaces {list(allowed)}"
    return ""


def check(app: Application, refs: Iterable[ObjectRef], namespaced: Mapping[ObjectRef, bool]
          ) -> None:
    """``PolicyError`` naming every object that breaks a rule."""
    lines = violations(app, refs, namespaced)
    if lines:
        raise PolicyError(f"{len(lines)} object(s) not allowed for application {app.name}:\n  "
                          + "\n  ".join(lines), obj=lines[0].split(":", 1)[0])
