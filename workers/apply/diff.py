"""Diff: what an apply would do, for people (``fleetsync diff``), without writing.

``diff_unit`` observes and plans exactly as the engine does and stops there: it
makes reads only. ``format_diff`` is pure and prints one block per object that
would change, in apply order, prunes last:

    + Service/web/api
    ~ Deployment/web/web-app
        spec.replicas: 5 -> 3
    - ConfigMap/web/old (prune)
    ! ConfigMap/web/taken: exists and was not applied by fleetsync ...

Unchanged objects are left out, so an empty string means "in sync".
"""

from __future__ import annotations

from shared.spec.model import Application
from workers.apply import annotations as notes, namespaces
from workers.apply.discovery import PROCESS, Discovery
from workers.apply.kube import Kube
from workers.apply.observe import observe
from workers.apply.plan import (CONFIGURED, CREATED, PRUNE_DISABLED, PRUNED, SKIPPED, Change,
                                ChangeSet, plan)
from workers.apply.refs import ref_of


def format_diff(changeset: ChangeSet) -> str:
    """A readable per-object diff; ``""`` when nothing would change."""
    return "\n".join(line for change in changeset.entries for line in _lines(change))


def _lines(change: Change) -> list[str]:
    ref = str(change.ref)
    if change.action == CREATED:
        return [f"+ {ref}"]
    if change.action == CONFIGURED:
        note = " (adopt)" if change.reason == "adopted" else ""
        return [f"~ {ref}{note}"] + [f"    {field}" for field in change.drift]
    if change.action == PRUNED:
        return [f"- {ref} (prune)"]
    if change.action == SKIPPED and (change.conflict or change.reason == PRUNE_DISABLED
                                     or change.reason.startswith(notes.KEPT_PREFIX)):
        return [f"! {ref}: {change.reason}"]
    return []


def diff_unit(kube: Kube, app: Application, objects: list[dict],
              discovery: Discovery = PROCESS) -> ChangeSet:
    """The ChangeSet an apply of ``objects`` would carry out now; reads only."""
    own_namespaces = namespaces.wanted(app, objects)
    seen = observe(kube, app.name, objects + own_namespaces, discovery)
    for own in own_namespaces:
        seen = namespaces.leave_foreign(seen, ref_of(own), app.name)
    held = notes.held(seen.desired, seen.live)
    changeset = plan([o for r, o in seen.desired.items() if r not in held], seen.live,
                     seen.inventory.refs, app=app.name, prune=app.prune, adopt=app.adopt,
                     values=True)
    return notes.settle(changeset, held, seen.live, seen.inventory.refs)
