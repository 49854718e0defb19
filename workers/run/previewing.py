"""A preview, as the workers carry it out: revisions, units, one part per cluster.

``begin`` (task ``fleetsync.preview``) reads the preview's record, fetches the
candidate ref into this host's mirror *without recording it*: the source's
revision in Redis, which every run follows, stays where it is, and no unit's
status is touched. The base is the ref asked for, else the revision the fleet
applies now. It then picks the units (the source's applications, narrowed by
``apps`` and the cluster selector) and asks for one part per cluster.

A candidate fleet spec (``--spec FILE``: the spec is not in Git, so a change of
cluster labels, selectors or clusters is previewed with the file it would become)
decides targeting only: units it adds are ``added``, units it drops ``removed``.
Every request still goes where the current spec reaches, with the identities it
already uses; the candidate's kubeconfigs, sources and identities are never used.

``part`` (task ``fleetsync.preview_cluster``) previews one cluster's units
(``workers.run.preview_unit``), adds their records and counts itself done; the
last part marks the preview ``done``. A part that cannot run records every one
of its units ``failed`` with why: a preview always ends, and says per unit what
went wrong.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any

from shared import tasks_api
from shared.errors import FleetsyncError, SourceError
from shared.logs import get_logger
from shared.spec.model import Cluster, Fleet, Source
from shared.state import previews
from workers.context import Context
from workers.run import stages
from shared.spec.load import load_fleet
from workers.run.preview_inputs import Changes
from workers.run.preview_unit import (Costs, preview_added, preview_removed, preview_unit,
                                      record)
from workers.run.steps import Send

log = get_logger("fleetsync.preview")
_SHA = re.compile(r"[0-9a-f]{7,40}")


@dataclass
class Plan:
    """What ``begin`` decided: the two revisions and each cluster's applications."""

    base: str = ""
    revision: str = ""
    parts: dict[str, list[str]] = field(default_factory=dict)
    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)

    def clusters(self) -> list[str]:
        return list(dict.fromkeys([*self.parts, *self.added, *self.removed]))

    def kwargs(self, cluster: str) -> dict[str, list[str]]:
        found = {"units": self.parts.get(cluster, []), "added": self.added.get(cluster, []),
                 "removed": self.removed.get(cluster, [])}
        return {k: v for k, v in found.items() if v}


def candidate_fleet(ctx: Context, meta: dict[str, Any]) -> Fleet | None:
    """The candidate spec the preview carries (``spec``), validated as any spec is."""
    text = meta.get("spec")
    if not text:
        return None
    if not isinstance(text, str):
        raise FleetsyncError("the preview's candidate spec is not text")
    folder = ctx.settings.cache_dir / "previews"
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=f"{meta['id']}-", suffix=".yaml", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return load_fleet(path, allow_local=ctx.settings.allow_local_sources)
    finally:
        os.unlink(path)


def differences(now: dict[str, list[str]], then: dict[str, list[str]]
                ) -> dict[str, list[str]]:
    """Per cluster, the applications of ``then`` that ``now`` does not have."""
    found = {c: [a for a in apps if a not in now.get(c, [])] for c, apps in then.items()}
    return {c: apps for c, apps in found.items() if apps}


def fetch_ref(ctx: Context, source: Source, ref: str) -> str:
    """The commit ``ref`` (a branch, a tag or a SHA) names, fetched into the mirror only."""
    if _SHA.fullmatch(ref):
        return ctx.sources.fetch(replace(source, ref_kind="commit", ref=ref))
    try:
        return ctx.sources.fetch(replace(source, ref_kind="branch", ref=ref))
    except SourceError as branch_error:
        try:
            return ctx.sources.fetch(replace(source, ref_kind="tag", ref=ref))
        except SourceError:
            raise branch_error from None


def base_revision(ctx: Context, source: Source, base: str) -> str:
    """The revision compared with: ``base`` fetched, else what the fleet applies now."""
    if base:
        return fetch_ref(ctx, source, base)
    known = ctx.status.source_revision(source.name)
    return known[0] if known else ctx.sources.fetch(source)


def targets(fleet: Fleet, meta: dict[str, Any]) -> dict[str, list[str]]:
    """Each cluster's applications of the preview's source, as ``apps`` and the selector
    narrow them, in spec order."""
    wanted = set(meta.get("apps") or ())
    selector = meta.get("selector") or {}
    parts: dict[str, list[str]] = {}
    for app in fleet.applications.values():
        if app.source != meta["source"] or (wanted and app.name not in wanted):
            continue
        for cluster in fleet.clusters_for(app):
            if _selected(cluster, selector):
                parts.setdefault(cluster.name, []).append(app.name)
    return parts


def _selected(cluster: Cluster, selector: dict[str, Any]) -> bool:
    return all(cluster.labels.get(str(k)) == str(v) for k, v in selector.items())


def begin(ctx: Context, preview_id: str, source: str, ref: str) -> tuple[dict[str, Any],
                                                                          list[Send]]:
    """Decide the preview and return its result and the parts to send."""
    meta = _meta(ctx, preview_id)
    if meta is None:
        return {"preview": preview_id, "dropped": "no such preview"}, []
    if (meta["source"], meta["ref"]) != (source, ref):
        return {"preview": preview_id, "dropped": "the task does not match the preview"}, []
    if meta.get("state") != "running" or meta.get("base_revision"):
        return {"preview": preview_id, "dropped": "begun already"}, []
    fleet = ctx.fleet()
    found = targets(fleet, meta) if source in fleet.sources else {}
    try:
        plan = _plan(ctx, fleet, meta, found)
    except FleetsyncError as exc:
        return _failed(ctx, meta, found, f"{ref}: {exc}"), []
    if not previews.claim_part(ctx.redis, preview_id, "begin"):      # delivered twice
        return {"preview": preview_id, "dropped": "begun already"}, []
    previews.update(ctx.redis, preview_id, revision=plan.revision, base_revision=plan.base)
    if not plan.clusters():
        previews.update(ctx.redis, preview_id, state="done",
                        message=f"no application of source {source} matches")
        return {"preview": preview_id, "units": 0}, []
    quiet = untouched(ctx, fleet, plan, source)     # no render, no request: reported here
    previews.add_records(ctx.redis, preview_id, quiet)          # before any part can end
    clusters = plan.clusters()
    if clusters:
        previews.set_total(ctx.redis, preview_id, len(clusters))
    else:
        previews.update(ctx.redis, preview_id, state="done")
    sends = [Send(tasks_api.PREVIEW_CLUSTER, [preview_id, cluster],
                  {"source": source, "ref": ref, **plan.kwargs(cluster)})
             for cluster in clusters]
    log.info("preview begins", preview=preview_id, source=source, ref=ref,
             revision=plan.revision, base=plan.base, clusters=len(sends), untouched=len(quiet))
    return {"preview": preview_id, "revision": plan.revision, "base_revision": plan.base,
            "clusters": len(sends), "untouched": len(quiet),
            "units": sum(len(a) for a in plan.parts.values()),
            "added": sum(len(a) for a in plan.added.values()),
            "removed": sum(len(a) for a in plan.removed.values())}, sends


def untouched(ctx: Context, fleet: Fleet, plan: Plan, source: str) -> list[dict[str, Any]]:
    """The units whose inputs the candidate leaves alone (``workers.run.preview_inputs``),
    taken out of ``plan.parts`` and recorded ``unchanged``; none when Git cannot tell."""
    try:
        changes = _changes(ctx, fleet.sources[source], plan)
    except FleetsyncError as exc:
        log.info("the candidate's changed files are unknown: every unit is rendered",
                 error=str(exc)[:200])
        return []
    quiet = []
    for cluster, apps in list(plan.parts.items()):
        keep = []
        for app in apps:
            if changes.untouched(fleet.applications[app], fleet.clusters[cluster]):
                quiet.append(record(app, cluster, plan.base, plan.revision, "unchanged"))
            else:
                keep.append(app)
        plan.parts[cluster] = keep
        if not keep:
            del plan.parts[cluster]
    return quiet


def _changes(ctx: Context, source: Source, plan: Plan) -> Changes:
    if plan.base == plan.revision:
        return Changes((), ())
    changed = ctx.sources.changed_files(source, plan.base, plan.revision)
    return Changes.of(changed, ctx.sources.tree_entries(source, plan.revision) if changed else ())


def _plan(ctx: Context, fleet: Fleet, meta: dict[str, Any],
          found: dict[str, list[str]]) -> Plan:
    source = fleet.sources.get(meta["source"])
    if source is None:
        raise SourceError(f"no source named {meta['source']!r} in {fleet.path}")
    if source.helm_repository:
        raise SourceError(f"source {source.name} is a Helm repository; previews follow Git refs")
    revision = fetch_ref(ctx, source, meta.get("revision") or meta["ref"])
    plan = Plan(base_revision(ctx, source, meta.get("base") or ""), revision, found)
    candidate = candidate_fleet(ctx, meta)
    if candidate is not None:
        then = targets(candidate, meta)
        plan.added, plan.removed = differences(found, then), differences(then, found)
    return plan


def _failed(ctx: Context, meta: dict[str, Any], found: dict[str, list[str]],
            message: str) -> dict[str, Any]:
    """The candidate cannot be had: every unit says so, and the preview is failed."""
    units = [record(app, cluster, "", "", "failed", message)
             for cluster, apps in found.items() for app in apps]
    previews.set_total(ctx.redis, meta["id"], 1)
    previews.add_units(ctx.redis, meta["id"], units)
    previews.update(ctx.redis, meta["id"], state="failed", message=message)
    log.warning("preview failed", preview=meta["id"], error=message[:300])
    return {"preview": meta["id"], "failed": message, "units": len(units)}


def part(ctx: Context, preview_id: str, cluster: str, apps: list[str],
         added: list[str] | None = None, removed: list[str] | None = None) -> dict[str, Any]:
    """Preview ``apps`` on ``cluster`` (and the units a candidate spec adds there or drops);
    the last part to finish ends the preview."""
    meta = _meta(ctx, preview_id)
    if meta is None:
        return {"preview": preview_id, "cluster": cluster, "dropped": "no such preview"}
    base, revision, costs = meta.get("base_revision", ""), meta.get("revision", ""), Costs()
    fleet = ctx.fleet()
    try:
        _have(ctx, fleet, meta)
    except FleetsyncError as exc:
        return part_failed(ctx, preview_id, cluster, [*apps, *(added or []), *(removed or [])],
                           exc)
    units = [preview_removed(fleet, app, cluster, base, revision) for app in removed or []]
    units += _added(ctx, fleet, meta, cluster, added or [], costs)
    for app in apps:
        unit = stages.unit_in_spec(ctx, app, cluster)
        if unit is None:
            units.append(record(app, cluster, base, revision, "failed",
                                "no longer in the fleet spec"))
            continue
        units.append(preview_unit(ctx, unit, base, revision, costs))
    return finish_part(ctx, preview_id, cluster, units, costs)


def _have(ctx: Context, fleet: Fleet, meta: dict[str, Any]) -> None:
    """Both revisions in this host's mirror (a part may run on another host than ``begin``;
    a commit the mirror holds costs no network)."""
    source = fleet.sources.get(meta["source"])
    if source is None:
        raise SourceError(f"no source named {meta['source']!r} in {fleet.path}")
    for revision in (meta.get("revision"), meta.get("base_revision")):
        if revision and not ctx.sources.has_commit(source, revision):
            fetch_ref(ctx, source, revision)


def _added(ctx: Context, fleet: Fleet, meta: dict[str, Any], cluster: str, apps: list[str],
           costs: Costs) -> list[dict[str, Any]]:
    if not apps:
        return []
    base, revision = meta.get("base_revision", ""), meta.get("revision", "")
    candidate = candidate_fleet(ctx, meta)
    found = []
    for app in apps:
        if candidate is None or app not in candidate.applications \
                or cluster not in candidate.clusters:
            found.append(record(app, cluster, base, revision, "failed",
                                "the candidate spec no longer has this unit"))
            continue
        found.append(preview_added(ctx, fleet, candidate.applications[app],
                                   candidate.clusters[cluster], base, revision, costs))
    return found


def finish_part(ctx: Context, preview_id: str, cluster: str, units: list[dict[str, Any]],
                costs: Costs) -> dict[str, Any]:
    if not previews.claim_part(ctx.redis, preview_id, f"cluster:{cluster}"):
        return {"preview": preview_id, "cluster": cluster, "dropped": "reported already"}
    previews.add_costs(ctx.redis, preview_id, requests=costs.requests, dry_runs=costs.dry_runs,
                       writes=costs.writes)
    if previews.add_units(ctx.redis, preview_id, units):
        previews.update(ctx.redis, preview_id, state="done")
    outcomes: dict[str, int] = {}
    for unit in units:
        outcomes[unit["outcome"]] = outcomes.get(unit["outcome"], 0) + 1
    return {"preview": preview_id, "cluster": cluster, "outcomes": outcomes,
            "requests": costs.requests, "dry_runs": costs.dry_runs}


def part_failed(ctx: Context, preview_id: str, cluster: str, apps: list[str],
                exc: BaseException) -> dict[str, Any]:
    """A part that broke: every one of its units (``apps``: with those added and removed)
    is ``failed`` with why, and the part still counts done."""
    meta = _meta(ctx, preview_id) or {}
    message = f"the preview of cluster {cluster} broke: {type(exc).__name__}: {exc}"
    units = [record(app, cluster, meta.get("base_revision", ""), meta.get("revision", ""),
                    "failed", message[:500]) for app in apps]
    return finish_part(ctx, preview_id, cluster, units, Costs())


def _meta(ctx: Context, preview_id: str) -> dict[str, Any] | None:
    return previews.meta(ctx.redis, preview_id) if isinstance(preview_id, str) else None
