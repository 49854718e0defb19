"""Validate: server-side dry-run of every object a plan would write, before any write.

If one object is invalid, nothing is written and the error lists every invalid
object with the API server's own message (DESIGN "Apply, in order", step 2).
Dry-runs are independent, so they run concurrently.

Two kinds of object cannot be dry-run where they will live:

* Objects in a namespace that this same render creates (first apply of an app
  that brings its namespace). A dry-run there answers 404 because dry-running
  the Namespace does not create it, and creating it first would be a write.
  They are dry-run as a *create* in a stand-in namespace that exists
  (``fleetsync-system`` when present, else ``default``) with the namespace
  field rewritten. Validation of an object does not depend on its namespace
  (admission policies scoped to a namespace aside), so "one invalid object
  means nothing is written" holds for them too. If the stand-in already holds
  an object of that name, or refuses us (RBAC), the object is left to be
  validated by its real apply, and ``unvalidated`` says so.
* Custom resources whose CRD is in this render and not served yet: the server
  cannot validate a kind it does not know; they are validated by their apply.

A dry-run refused because an immutable field changed is an invalid object in
one line (the field, and ``force: true``), unless the application sets
``force`` (or the object's annotations do): then it passes, and the apply
replaces the object. Each object is dry-run with the verb its write will use
(``execute.write_one``: server-side apply, or a PUT for ``Replace=true``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from shared.errors import ApplyError
from workers.apply.annotations import AS_USUAL, Behaviour
from workers.apply.execute import write_one
from workers.apply.pool import shared
from workers.apply.discovery import Resource
from workers.apply.immutable import is_immutable, refusal
from workers.apply.kube import Conflict, Invalid, Kube, KubeError, NotFound, detail
from workers.apply.refs import ObjectRef

STAND_INS = ("fleetsync-system", "default")


@dataclass(frozen=True)
class Validation:
    invalid: tuple[str, ...] = ()          # "Kind/ns/name: server message"
    unvalidated: tuple[str, ...] = ()      # "Kind/ns/name: why"


def validate(kube: Kube, objects: Mapping[ObjectRef, dict], resources: Mapping[ObjectRef, Resource],
             *, new_namespaces: frozenset[str], pending: frozenset[ObjectRef],
             force: bool = False, probed: Mapping[ObjectRef, dict] | None = None,
             how: Mapping[ObjectRef, Behaviour] | None = None) -> Validation:
    """Dry-run every object; raise ``ApplyError`` listing every invalid one. An object
    whose very body passed a dry-run already (``probed``, by observe) is not dry-run again.
    ``how``: objects whose annotations ask for another verb, validation or ``force``."""
    probed, how = probed or {}, how or {}
    stand_in = stand_in_namespace(kube) if any(r.namespace in new_namespaces
                                               for r in objects) else ""
    pool = shared()
    futures = {ref: pool.submit(_dry_run, kube, ref, obj, resources[ref],
                                stand_in if ref.namespace in new_namespaces else "", force,
                                how.get(ref, AS_USUAL))
               for ref, obj in objects.items() if ref not in pending and probed.get(ref) != obj}
    outcomes = {ref: future.result() for ref, future in futures.items()}
    result = Validation(
        tuple(f"{ref}: {msg}" for ref, (ok, msg) in sorted(outcomes.items()) if ok is False),
        tuple(f"{ref}: {msg}" for ref, (ok, msg) in sorted(outcomes.items()) if ok is None)
        + tuple(f"{ref}: its CRD is applied in this same run" for ref in sorted(pending)
                if ref in objects))
    if result.invalid:
        raise ApplyError(f"{len(result.invalid)} invalid object(s), nothing was applied:\n  "
                         + "\n  ".join(result.invalid), obj=result.invalid[0].split(":")[0])
    return result


def _refused(exc: KubeError, ref: ObjectRef, force: bool) -> tuple[bool, str]:
    """A dry-run refusal, as a one-line reason where we know a better one than the server's."""
    if is_immutable(exc):
        return (True, "") if force else (False, refusal(exc.detail))
    if isinstance(exc, NotFound) and ref.namespace and f'namespaces "{ref.namespace}" not found' in exc.detail:
        return False, (f"{detail(exc)}: add the namespace to Git, or set createNamespace: true "
                       "on the application")
    return False, detail(exc)


def _as_created(kube: Kube, ref: ObjectRef, obj: dict, resource: Resource,
                how: Behaviour) -> tuple[bool | None, str]:
    """A PUT refused under ``Replace=true,Force=true``: the object is deleted and created
    again, so it is checked as a create; only AlreadyExists may refuse that (the server
    validates and admits before it looks for the name)."""
    try:
        kube.create(resource.collection(ref.namespace), obj, dry_run=True,
                    validation="Strict" if how.validate else "Ignore")
    except Conflict:
        return True, ""
    except KubeError as exc:
        return False, detail(exc)
    return True, ""


def stand_in_namespace(kube: Kube) -> str:
    """A namespace that exists, to dry-run objects whose own namespace does not yet."""
    for name in STAND_INS[:-1]:
        if kube.get_or_none(f"/api/v1/namespaces/{name}") is not None:
            return name
    return STAND_INS[-1]


def _dry_run(kube: Kube, ref: ObjectRef, obj: dict, resource: Resource,
             stand_in: str, force: bool = False, how: Behaviour = AS_USUAL
             ) -> tuple[bool | None, str]:
    """(True, "") valid; (False, message) invalid; (None, why) could not be checked.

    Transient errors propagate: the whole apply is retried rather than half-checked.
    """
    if not stand_in:
        try:
            write_one(kube, obj, resource, ref, how, dry_run=True)
            return True, ""
        except KubeError as exc:
            if how.replace and how.force and isinstance(exc, Invalid):
                return _as_created(kube, ref, obj, resource, how)
            return _refused(exc, ref, force or how.force)
    moved = {**obj, "metadata": {**obj["metadata"], "namespace": stand_in}}
    validation = ("Strict" if how.validate else "Ignore") if how.replace else None
    try:
        kube.create(resource.collection(stand_in), moved, dry_run=True, validation=validation)
        return True, ""
    except Invalid as exc:
        return False, f"{detail(exc)} (checked in namespace {stand_in}: {ref.namespace} " \
                      "is created by this apply)"
    except KubeError as exc:
        return None, f"dry-run in stand-in namespace {stand_in} was refused: {detail(exc)}"
