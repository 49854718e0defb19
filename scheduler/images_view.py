"""What image automation knows, assembled from Redis for ``images status`` and the dashboard.

Per policy: its latest record (tag, digest, why, when, or the error), what Git has at
each image source's head for its markers (``file:line`` and value), and which
clusters run which tag. The last is derived, not asked of the clusters: a unit's
status names the revision it applied, and the workers keep the setter markers of
every revision a unit applied (``shared.state.imageupdates``), so a cluster runs the
tag its applied revision's markers hold. A revision whose markers were not read yet
(a pass reads them) shows as ``?``. Per image source: the last pass's commit,
changes, problems and the policies it left out.
"""

from __future__ import annotations

from typing import Any, Mapping

from shared.spec.model import Fleet, Source
from shared.state import imageupdates, images as image_records
from shared.state.status import StatusStore, UnitStatus


def image_sources(fleet: Fleet) -> list[Source]:
    return [s for s in fleet.sources.values() if s.image_updates is not None
            and not s.helm_repository and not s.oci_artifact]


def view(r: Any, fleet: Fleet) -> dict[str, Any]:
    """``{"policies": [...], "sources": [...]}``, JSON-ready."""
    store = StatusStore(r)
    records = image_records.load_all(r, [p.name for p in fleet.images])
    sources = image_sources(fleet)
    passes = {s.name: imageupdates.load_pass(r, s.name) or {} for s in sources}
    heads = {s.name: (store.source_revision(s.name) or ("", 0.0))[0]
             or str(passes[s.name].get("revision") or "") for s in sources}
    units = _units_by_source(fleet, store.all_statuses(), sources)
    markers = {s.name: imageupdates.load_markers_many(
        r, s.name, [heads[s.name], *(u.revision for u in units[s.name])]) for s in sources}
    policies = []
    for policy in fleet.images:
        record = records.get(policy.name) or {}
        git = [dict(m, source=s.name, revision=heads[s.name]) for s in sources
               for m in markers[s.name].get(heads[s.name], []) if m.get("policy") == policy.name]
        clusters = [_running(policy.name, s.name, u, markers[s.name])
                    for s in sources for u in units[s.name]]
        policies.append({"name": policy.name, "repository": policy.repository,
                         "policy": f"{policy.kind} {policy.value}",
                         **{k: record.get(k, "") for k in ("tag", "digest", "why", "error")},
                         "at": record.get("at") or 0, "considered": record.get("considered", 0),
                         "ignored": record.get("ignored", 0), "git": git,
                         "clusters": [c for c in clusters if c is not None]})
    return {"policies": policies,
            "sources": [_source(s, heads[s.name], passes[s.name]) for s in sources]}


def _units_by_source(fleet: Fleet, statuses: list[UnitStatus], sources: list[Source]
                     ) -> dict[str, list[UnitStatus]]:
    app_source = {a.name: a.source for a in fleet.applications.values()}
    out: dict[str, list[UnitStatus]] = {s.name: [] for s in sources}
    for status in statuses:
        source = app_source.get(status.app)
        if source in out and status.revision:
            out[source].append(status)
    return out


def _running(policy: str, source: str, unit: UnitStatus,
             markers: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The tag a unit's applied revision holds for ``policy``; None when it has no marker."""
    found = markers.get(unit.revision)
    base = {"cluster": unit.cluster, "app": unit.app, "revision": unit.revision,
            "phase": unit.phase, "source": source}
    if found is None:
        return dict(base, tag="?")
    tags = sorted({tag_of(m) for m in found if m.get("policy") == policy} - {""})
    return dict(base, tag=", ".join(tags)) if tags else None


def tag_of(marker: Mapping[str, Any]) -> str:
    """The tag a marker's value holds (``repo:tag``, or a ``:tag`` marker's value; pure)."""
    value = str(marker.get("value") or "")
    if marker.get("part") == "tag":
        return value
    if marker.get("part") == "name":
        return ""
    value = value.split("@", 1)[0]
    name, sep, tag = value.rpartition(":")
    return tag if sep and "/" not in tag else ""


def _source(source: Source, head: str, last: Mapping[str, Any]) -> dict[str, Any]:
    assert source.image_updates is not None
    branch = source.ref if source.ref_kind == "branch" else ""
    return {"name": source.name, "url": source.url, "branch": branch,
            "push_branch": source.image_updates.push_branch or branch,
            "head": head, **{k: last.get(k) for k in ("commit", "at", "error", "subject")},
            "changes": last.get("changes") or [], "problems": last.get("problems") or [],
            "left_out": last.get("left_out") or []}
