"""The plan: what one reconcile will do to each object, decided as data. Pure.

``plan`` takes the desired objects (already ``stamp``-ed with the ownership
label), the live object for every ref it might touch (``None`` when absent), and
the previous inventory, and returns a ``ChangeSet``: one ``Change`` per object
with an action, a reason, and for ``configured`` the drifted fields. The
executor (``engine``) only carries out what the ChangeSet says; tests check
every decision here without a cluster or a mock. One action is known only
after the fact: ``replaced``, an update the API server refused because a field
is immutable, carried out as delete and create under ``force``
(``with_replaced``).

Ownership is the label ``fleetsync.io/application``: an unlabelled live object
is taken over only with ``adopt``; an object labelled for another application
is never taken over. Both show up as ``conflicts`` that the engine refuses
before it writes anything. Prune deletes only what the previous inventory
lists, is no longer desired, and still carries this application's label.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

from shared.errors import OwnershipError
from workers.apply.drift import drift
from workers.apply.policy import never_pruned
from workers.apply.refs import (APP_LABEL, ObjectRef, apply_order, owner_of, prune_order,
                                ref_of, stamp, tiers)

__all__ = ["ACTIONS", "Change", "ChangeSet", "ObjectRef", "apply_order", "ownership_error",
           "plan", "prune_order", "ref_of", "stamp", "tiers"]

CREATED, CONFIGURED, REPLACED, UNCHANGED, PRUNED, SKIPPED = (
    "created", "configured", "replaced", "unchanged", "pruned", "skipped")
ACTIONS = (CREATED, CONFIGURED, REPLACED, UNCHANGED, PRUNED, SKIPPED)
PRUNE_DISABLED = "prune disabled"
ADOPTED_KEPT = "adopted, not created by fleetsync: not pruned (prune: adopted prunes it)"
NEVER_PRUNED = "a namespace fleetsync never prunes"
OCCUPIED = "still holds objects of others"       # (the reason names them)
KEPT = (PRUNE_DISABLED, ADOPTED_KEPT)
ADOPTED = "adopted"


@dataclass(frozen=True)
class Change:
    """The decision for one object; ``conflict`` marks an ownership refusal."""

    ref: ObjectRef
    action: str
    reason: str = ""
    drift: tuple[str, ...] = ()
    conflict: bool = False

    @property
    def writes(self) -> bool:
        return self.action in (CREATED, CONFIGURED, REPLACED, PRUNED)


@dataclass(frozen=True)
class ChangeSet:
    """Every decision of one plan, in apply order (prunes last, in prune order)."""

    entries: tuple[Change, ...] = ()
    kept: tuple[ObjectRef, ...] = field(default=())   # not desired, but stays in the inventory

    def by_action(self, action: str) -> list[Change]:
        return [c for c in self.entries if c.action == action]

    def to_apply(self) -> list[Change]:
        return [c for c in self.entries if c.action in (CREATED, CONFIGURED, REPLACED)]

    def to_prune(self) -> list[Change]:
        return self.by_action(PRUNED)

    def conflicts(self) -> list[Change]:
        return [c for c in self.entries if c.conflict]

    def counts(self) -> dict[str, int]:
        return {a: len(self.by_action(a)) for a in ACTIONS}

    def has_writes(self) -> bool:
        """True when carrying out this plan would change the cluster."""
        return any(c.writes for c in self.entries)

    def get(self, ref: ObjectRef) -> Change | None:
        return next((c for c in self.entries if c.ref == ref), None)

    def summary(self, limit: int = 20) -> dict[str, list[str]]:
        """Short, JSON-able lists of what changed (for results and logs)."""
        out: dict[str, list[str]] = {}
        for change in self.entries:
            if change.action != UNCHANGED:
                out.setdefault(change.action, []).append(str(change.ref))
        return {action: names[:limit] for action, names in out.items()}


def plan(desired: Iterable[dict], live: Mapping[ObjectRef, dict | None],
         inventory: Iterable[ObjectRef], *, app: str, prune: bool, adopt: bool,
         values: bool = False, adopted: Iterable[ObjectRef] = (),
         prune_adopted: bool = False) -> ChangeSet:
    """Decide create/configure/unchanged/skip for desired objects, prune/skip for the rest.
    Drift lines carry values only with ``values`` (``fleetsync diff``); else see
    ``drift.drift``: results, history and logs never hold a value that could be secret."""
    wanted = {ref_of(obj): obj for obj in desired}
    entries = [decide(wanted[ref], live.get(ref), app=app, adopt=adopt, values=values)
               for ref in apply_order(wanted)]
    gone = [ref for ref in prune_order(set(inventory)) if ref not in wanted]
    took_over = set(adopted)
    leftovers = [decide_leftover(ref, live.get(ref), app=app, prune=prune,
                                 adopted=ref in took_over and not prune_adopted) for ref in gone]
    kept = tuple(c.ref for c in leftovers if c.reason in KEPT)
    return ChangeSet(tuple(entries + leftovers), kept)


def decide(desired: dict, live: dict | None, *, app: str, adopt: bool,
           values: bool = False) -> Change:
    """The decision for one desired object."""
    ref = ref_of(desired)
    if live is None:
        return Change(ref, CREATED, "not found in the cluster")
    owner = owner_of(live)
    if owner not in (None, app):
        return Change(ref, SKIPPED, f"owned by application {owner!r} ({APP_LABEL})",
                      conflict=True)
    if owner is None and not adopt:
        return Change(ref, SKIPPED, "exists and was not applied by fleetsync (set adopt: true "
                                    "to take it over)", conflict=True)
    fields = tuple(drift(desired, live, values=values))
    if owner is None:
        return Change(ref, CONFIGURED, ADOPTED, fields)
    if fields:
        return Change(ref, CONFIGURED, "drifted from Git", fields)
    return Change(ref, UNCHANGED)



def decide_leftover(ref: ObjectRef, live: dict | None, *, app: str, prune: bool,
                    adopted: bool = False) -> Change:
    """The decision for an object in the previous inventory that is no longer desired.
    ``adopted``: the application took it over rather than created it (kept unless the
    application says ``prune: adopted``)."""
    if live is None:
        return Change(ref, SKIPPED, "already deleted")
    if owner_of(live) != app:
        return Change(ref, SKIPPED, f"no longer labelled {APP_LABEL}={app}: left alone")
    if never_pruned(ref):
        return Change(ref, SKIPPED, NEVER_PRUNED)
    if not prune:
        return Change(ref, SKIPPED, PRUNE_DISABLED)
    if adopted:
        return Change(ref, SKIPPED, ADOPTED_KEPT)
    return Change(ref, PRUNED, "no longer in Git")


def with_replaced(changeset: ChangeSet, refs: Iterable[ObjectRef]) -> ChangeSet:
    """The change set after the executor deleted and re-created ``refs`` (``force``): an
    update the API server refused because a field is immutable became a replacement."""
    replaced = set(refs)
    if not replaced:
        return changeset
    entries = tuple(replace(c, action=REPLACED, reason=f"{c.reason}; an immutable field changed")
                    if c.ref in replaced else c for c in changeset.entries)
    return ChangeSet(entries, changeset.kept)


def ownership_error(changeset: ChangeSet, *, app: str) -> OwnershipError | None:
    """One error naming every object fleetsync may not take over, or None."""
    conflicts = changeset.conflicts()
    if not conflicts:
        return None
    lines = [f"{c.ref}: {c.reason}" for c in conflicts]
    return OwnershipError(f"{len(lines)} object(s) not owned by {app}:\n  " + "\n  ".join(lines),
                          obj=str(conflicts[0].ref))
