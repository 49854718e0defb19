"""The two write verbs of a plan: apply (in tiers) and prune (in reverse tiers).

Both carry out a ``ChangeSet`` and nothing else, and both report partial
success instead of stopping at the first failure, so that the engine can put
what was applied, and what survived a failed delete, into the inventory before
it raises (after kustomize-controller: survivors go back into the inventory).

Apply is server-side apply, tier by tier (Namespaces, CRDs, other
cluster-scoped, namespaced), concurrently within a tier. After the CRD tier it
waits for the CRDs to be Established and refreshes discovery when custom
resources of them follow in the same run. Prune deletes with a ``uid``
precondition, so it only ever deletes the very object the plan saw.

An update refused because a field is immutable is replaced (deleted and
re-created, ``workers.apply.immutable``) when the application sets ``force``;
``Outcome.replaced`` says which. Without ``force`` the failure is one line
naming the field.

An object's annotations (``workers.apply.annotations``) may ask for more:
``force`` for it alone; ``Replace=true``, written whole with a PUT (a POST
when it does not exist yet) asking ``fieldValidation=Strict``, as strict as a
server-side apply, and with ``Force=true`` re-created when the PUT is refused
as invalid; ``Validate=false``, ``fieldValidation=Ignore`` on those PUTs and
POSTs (``write_one`` is the one place that chooses the verb). A server-side
apply is sent without ``fieldValidation``: the API server (checked with
v1.37) refuses a field its schema does not declare whatever that parameter
says (``kube.UNDECLARED``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from shared.errors import ApplyError, FleetsyncError, LockLost, TransientError
from workers.apply import health, immutable
from workers.apply.annotations import AS_USUAL, Behaviour
from workers.apply.pool import shared
from workers.apply.discovery import Resource
from workers.apply.kube import Invalid, Kube, NotFound, detail
from workers.apply.refs import ObjectRef, is_crd, prune_order, tiers

NEW_KIND_GRACE = 5.0     # seconds a just-established CRD's endpoint may still answer 404


@dataclass
class Outcome:
    """What one write verb did: ``done`` per ref (the server's object, or None), and failures;
    ``halted``: what stopped it between two steps (a sync wave not healthy, a hook failed)."""

    done: dict[ObjectRef, dict | None] = field(default_factory=dict)
    failed: dict[ObjectRef, FleetsyncError] = field(default_factory=dict)
    replaced: set[ObjectRef] = field(default_factory=set)
    halted: FleetsyncError | None = None

    @property
    def stopped(self) -> bool:
        return bool(self.failed) or self.halted is not None

    def error(self, verb: str) -> FleetsyncError:
        """One error for every failure: transient if any is (the retry redoes it all)."""
        if self.halted is not None and not self.failed:
            return self.halted
        lines = [f"{ref}: {detail(exc)}" for ref, exc in sorted(self.failed.items())]
        text = f"{len(lines)} object(s) failed to {verb}:\n  " + "\n  ".join(lines)
        first = str(min(self.failed))
        transient = [e for e in self.failed.values() if isinstance(e, TransientError)]
        if transient:
            return TransientError(text, delay=transient[0].delay, obj=first)
        return ApplyError(text, obj=first)


def _each(refs: list[ObjectRef], work: Callable[[ObjectRef], dict | None],
          outcome: Outcome) -> None:
    """Run ``work`` for every ref concurrently, recording results and failures."""
    pool = shared()
    futures = {ref: pool.submit(work, ref) for ref in refs}
    for ref, future in futures.items():
        try:
            outcome.done[ref] = future.result()
        except FleetsyncError as exc:
            outcome.failed[ref] = exc


class Fence:
    """Whether this run may still write: ``tier()`` before each tier of writes (the
    caller may ask Redis), ``write()`` before each single write (cheap: a local lease
    clock). Both raise ``LockLost`` when the unit's lock is no longer the run's. This
    base class never refuses (tests, ``diff``)."""

    def tier(self) -> None:
        return None

    def write(self) -> None:
        return None


OPEN = Fence()


def apply_all(kube: Kube, objects: Mapping[ObjectRef, dict],
              resources: Mapping[ObjectRef, Resource], *, pending: frozenset[ObjectRef],
              on_crds: Callable[[], None], crd_timeout: float, force: bool = False,
              replace_timeout: float = 60.0, fence: Fence = OPEN,
              how: Mapping[ObjectRef, Behaviour] | None = None) -> Outcome:
    """Server-side apply of ``objects``, tier by tier; stops after the first failing tier.
    ``fence`` is asked before each tier and each write; when the unit's lock was lost
    it raises, and nothing more is written, not even the inventory. ``how``: the
    objects whose annotations ask for another behaviour (see the module doc)."""
    outcome, how = Outcome(), how or {}

    def one(ref: ObjectRef) -> dict:
        path, asked = resources[ref].path(ref), how.get(ref, AS_USUAL)
        fence.write()
        try:
            return _apply_one(kube, objects[ref], resources[ref], ref, asked, ref in pending)
        except Invalid as exc:
            if not (immutable.is_immutable(exc) or asked.replace and asked.force):
                raise
            if not (force or asked.force):
                line = immutable.refusal(exc.detail)
                raise Invalid(line, status=exc.status, detail=line) from exc
        replaced = immutable.replace(kube, path, objects[ref], timeout=replace_timeout,
                                     write=lambda: write_one(kube, objects[ref], resources[ref],
                                                             ref, asked))
        outcome.replaced.add(ref)
        return replaced

    for group in tiers(objects):
        fence.tier()
        _each(group, one, outcome)
        lost = [e for e in outcome.failed.values() if isinstance(e, LockLost)]
        if lost:
            raise lost[0]
        if outcome.failed:
            return outcome
        crds = {r: outcome.done[r] or {} for r in group if is_crd(r)}
        if crds:
            try:
                health.wait(kube, crds, resources, timeout=crd_timeout, poll=0.1)
                on_crds()
            except FleetsyncError as exc:
                outcome.failed.update(dict.fromkeys(crds, exc))
                return outcome
    return outcome


def write_one(kube: Kube, obj: dict, resource: Resource, ref: ObjectRef,
              how: Behaviour = AS_USUAL, *, dry_run: bool = False) -> dict:
    """Server-side apply of one object, or what its annotations ask instead."""
    if not how.replace:       # fieldValidation changes nothing here (see the module doc)
        return kube.apply(resource.path(ref), obj, dry_run=dry_run)
    validation = "Strict" if how.validate else "Ignore"
    try:
        return kube.replace(resource.path(ref), obj, dry_run=dry_run, validation=validation)
    except NotFound:                  # not there yet: created whole
        return kube.create(resource.collection(ref.namespace), obj, dry_run=dry_run,
                           validation=validation)


def _apply_one(kube: Kube, obj: dict, resource: Resource, ref: ObjectRef, how: Behaviour,
               new_kind: bool) -> dict:
    """Apply one object; a kind whose CRD was just established gets a short grace period."""
    deadline = time.monotonic() + (NEW_KIND_GRACE if new_kind else 0)
    while True:
        try:
            return write_one(kube, obj, resource, ref, how)
        except NotFound:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def prune_all(kube: Kube, refs: list[ObjectRef], live: Mapping[ObjectRef, dict | None],
              resources: Mapping[ObjectRef, Resource],
              fence: Fence = OPEN) -> Outcome:
    """Delete ``refs`` in reverse apply order; a 404 counts as deleted. ``fence`` as above."""
    outcome = Outcome()

    def one(ref: ObjectRef) -> None:
        uid = ((live.get(ref) or {}).get("metadata") or {}).get("uid")
        fence.write()
        try:
            kube.delete(resources[ref].path(ref), uid=uid)
        except NotFound:
            pass                        # already gone: what prune wanted
        return None

    for group in reversed(tiers(refs)):
        fence.tier()
        _each(prune_order(group), one, outcome)
        lost = [e for e in outcome.failed.values() if isinstance(e, LockLost)]
        if lost:
            raise lost[0]
    return outcome
