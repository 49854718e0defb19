"""One unit of a preview: rendered at the base and the candidate, dry-run only when they differ.

Both renders go through the stages the runs use (``stages.render``: the render
cache decides, and a render at the live revision is a hit). A unit whose objects
are the same at both revisions is ``unchanged`` and costs no API request. Any
other is planned against the live cluster and every object it would write is
dry-run (``dryRun=All``) by the apply engine with ``dry_run_only``, under the
unit's own identity and policy: nothing is written, not even its inventory.

The record (``shared.state.previews``) names objects and field paths, never a
value: what a field becomes may be a secret (a Secret's, or a token in a
ConfigMap), so only its path leaves the cluster's side.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from shared.errors import FleetsyncError, PermanentError, TransientError
from shared.logs import get_logger
from shared.spec.model import Application, Cluster, Fleet
from workers.apply.plan import CONFIGURED, CREATED, PRUNED, REPLACED, SKIPPED, Change
from workers.apply.refs import ObjectRef, ref_of
from workers.context import Context
from workers.run import stages

log = get_logger("fleetsync.preview")

# the dry-run writes nothing, so no inventory is ever compared with this fencing token:
# it is above any a lock holder can have, and only there for the stale-writer check
NO_WRITE_TOKEN = 2 ** 62
_ACTIONS = {CREATED: "create", CONFIGURED: "update", REPLACED: "update", PRUNED: "prune"}


@dataclass
class Costs:
    """What a part of a preview asked of its cluster."""

    requests: int = 0
    dry_runs: int = 0
    writes: int = 0


def digest(objects: list[dict[str, Any]]) -> str:
    """What a render's objects are, in order: equal digests, equal renders."""
    body = json.dumps(objects, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def record(app: str, cluster: str, base: str, revision: str, outcome: str, message: str = "",
           objects: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"app": app, "cluster": cluster, "base_revision": base, "revision": revision,
            "outcome": outcome, "message": message, "objects": objects or []}


def preview_unit(ctx: Context, unit: stages.Unit, base: str, revision: str,
                 costs: Costs) -> dict[str, Any]:
    """The unit's record: unchanged, changed, refused or failed (never raises but for a
    Redis blip)."""
    app, cluster = unit.app.name, unit.cluster.name
    try:
        new = stages.render(ctx, unit, revision).objects
    except FleetsyncError as exc:
        return record(app, cluster, base, revision, "failed",
                      f"render at {revision[:12]} failed: {exc}")
    old = _render_or_none(ctx, unit, base)
    if old is not None and digest(old) == digest(new):
        return record(app, cluster, base, revision, "unchanged")
    return dry_run(ctx, unit, new, base, revision, costs)


def _render_or_none(ctx: Context, unit: stages.Unit, base: str) -> list[dict] | None:
    """The objects at the base, or None (no base, or it does not render: then the live
    cluster is all the candidate is compared with)."""
    if not base:
        return None
    try:
        return stages.render(ctx, unit, base).objects
    except FleetsyncError as exc:
        log.info("base does not render", unit=f"{unit.cluster.name}/{unit.app.name}",
                 error=str(exc)[:200])
        return None


def dry_run(ctx: Context, unit: stages.Unit, objects: list[dict[str, Any]], base: str,
            revision: str, costs: Costs) -> dict[str, Any]:
    """Plan ``objects`` against the live cluster and dry-run what would be written."""
    from workers.apply.engine import apply_unit

    app, cluster = unit.app.name, unit.cluster.name
    try:
        result = apply_unit(ctx.kube(unit.cluster), app=unit.app, objects=objects,
                            revision=revision, token=NO_WRITE_TOKEN, dry_run_only=True,
                            identity=stages.identity_of(unit.app, unit.cluster),
                            rules=stages.health_rules(unit.fleet, unit.app))
    except PermanentError as exc:          # invalid, policy, ownership, immutable, no CRD
        return record(app, cluster, base, revision, "refused", _headline(exc),
                      refused_objects(exc, objects))
    except TransientError as exc:
        return record(app, cluster, base, revision, "failed",
                      f"the cluster did not answer the dry-run: {exc}")
    costs.requests += result.requests
    costs.dry_runs += result.dry_runs
    costs.writes += result.writes
    found = [entry for c in result.changeset.entries if (entry := _entry(c)) is not None]
    refused = [o for o in found if o["action"] == "refused"]
    if refused:
        return record(app, cluster, base, revision, "refused",
                      f"{len(refused)} object(s) refused", found)
    if not found:
        return record(app, cluster, base, revision, "unchanged",
                      "renders differently, and the live objects already match")
    return record(app, cluster, base, revision, "changed", _counted(found), found)


def _entry(change: Change) -> dict[str, Any] | None:
    ref = change.ref
    if change.action in _ACTIONS:
        fields = [line.split(":", 1)[0].split(" ", 1)[0] for line in change.drift]
        return _object(ref, _ACTIONS[change.action], fields)
    if change.action == SKIPPED and change.conflict:
        return _object(ref, "refused", message=change.reason)
    return None


def _object(ref: ObjectRef, action: str, fields: list[str] | None = None,
            message: str = "") -> dict[str, Any]:
    return {"apiVersion": ref.api_version, "kind": ref.kind, "namespace": ref.namespace,
            "name": ref.name, "action": action, "fields": fields or [], "message": message}


def _counted(objects: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj["action"]] = counts.get(obj["action"], 0) + 1
    return ", ".join(f"{n} to {action}" for action, n in counts.items())


def _headline(exc: Exception) -> str:
    return str(exc).split("\n", 1)[0].strip()


def refused_objects(exc: Exception, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects a refusal names (its ``Kind/ns/name: why`` lines), or the one it is about."""
    by_name = {str(ref_of(o)): ref_of(o) for o in objects if isinstance(o, dict)}
    found = []
    for line in str(exc).split("\n")[1:]:
        name, _, why = line.strip().partition(": ")
        if name in by_name:
            found.append(_object(by_name[name], "refused", message=why))
    named = getattr(exc, "obj", "") or ""
    if not found and named in by_name:
        found.append(_object(by_name[named], "refused", message=_headline(exc)))
    return found


# -- targeting changed by a candidate fleet spec (``--spec FILE``) ------------------------

def preview_added(ctx: Context, fleet: Fleet, app: Application, cluster: Cluster, base: str,
                  revision: str, costs: Costs) -> dict[str, Any]:
    """A unit the candidate spec targets and the current one does not: rendered as the
    candidate defines it (from the current spec's source), dry-run on the cluster the
    current spec reaches, with the identity it already uses there; a cluster the current
    spec does not have is listed, not reached."""
    name, where = app.name, cluster.name
    render_as = stages.Unit(fleet, app, cluster)
    try:
        objects = stages.render(ctx, render_as, revision).objects
    except FleetsyncError as exc:
        return record(name, where, base, revision, "failed",
                      f"render at {revision[:12]} failed: {exc}")
    live = fleet.clusters.get(where)
    if live is None:
        listed = [_object(ref_of(o), "create") for o in objects if isinstance(o, dict)]
        return record(name, where, base, revision, "added",
                      f"a new cluster: not in the current spec, so not reached; "
                      f"{len(listed)} object(s) to create", listed)
    known = fleet.applications.get(name)
    identity = known.service_account if known is not None else None
    found = dry_run(ctx, stages.Unit(fleet, replace(app, service_account=identity), live),
                    objects, base, revision, costs)
    if found["outcome"] in ("changed", "unchanged"):
        found["outcome"] = "added"
        found["message"] = "targeted by the candidate spec: " + (found["message"] or "in sync")
    return found


def preview_removed(fleet: Fleet, app_name: str, cluster: str, base: str,
                    revision: str) -> dict[str, Any]:
    """A unit the candidate spec no longer targets: its objects are orphaned or pruned
    as the application's ``onRemoval`` says (nothing is read or written)."""
    app = fleet.applications.get(app_name)
    mode = app.on_removal if app is not None else "orphan"
    return record(app_name, cluster, base, revision, "removed",
                  f"no longer targeted by the candidate spec: its objects would be {mode}ed "
                  f"(onRemoval: {mode})")
