"""Previews of a candidate revision, kept in Redis while they run and for a week after.

A preview (``fleetsync preview``, a pull request's webhook, ``POST /api/v1/previews``)
is created here by whoever asks for it, filled by the workers' ``fleetsync.preview``
tasks (one per cluster; each adds its units' records and counts itself done), and
read by the CLI, the server's pages and API, and the forge poster. Nothing here is a
unit's status: a preview never changes what the fleet applies or reports.

A record never holds a secret: unit records carry field paths, and values only where
the drift lines show them (never a Secret's); the forge origin carries repository,
number and head SHA, never a token.

Shapes (stable; ``-o json`` prints ``units`` as they are):

    meta:  {id, source, ref, base, revision, base_revision, apps: [..], selector: {..} | null,
            requested_by, origin: {provider, repository, number, head_sha, url} | null,
            state: running|done|failed, message, started_at, finished_at}
    unit:  {app, cluster, base_revision, revision,
            outcome: changed|unchanged|added|removed|refused|failed, message,
            objects: [{apiVersion, kind, namespace, name,
                       action: create|update|prune|refused, fields: [..], message}]}
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Iterable

from shared.state import keys

TTL = 7 * 24 * 3600
OUTCOMES = ("changed", "unchanged", "added", "removed", "refused", "failed")
_CHANGES = ("changed", "added", "removed")


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def create(client: Any, *, source: str, ref: str, base: str = "", apps: Iterable[str] = (),
           selector: dict[str, Any] | None = None, requested_by: str = "",
           origin: dict[str, Any] | None = None, preview_id: str = "") -> dict[str, Any]:
    """Record a new, running preview and return its meta (``id`` set)."""
    pid = preview_id or new_id()
    meta: dict[str, Any] = {"id": pid, "source": source, "ref": ref, "base": base,
            "revision": "", "base_revision": "", "apps": list(apps), "selector": selector,
            "requested_by": requested_by, "origin": origin, "state": "running",
            "message": "", "started_at": time.time(), "finished_at": None}
    key = keys.preview(pid)
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping={"meta": json.dumps(meta), "done": 0, "total": 0})
    pipe.expire(key, TTL)
    pipe.zadd(keys.PREVIEWS, {pid: meta["started_at"]})
    pipe.zremrangebyscore(keys.PREVIEWS, "-inf", time.time() - TTL)
    pipe.execute()
    return meta


def update(client: Any, preview_id: str, **fields: Any) -> dict[str, Any] | None:
    """Merge ``fields`` into a preview's meta (revision, base_revision, state, message...)."""
    key = keys.preview(preview_id)
    raw = client.hget(key, "meta")
    if raw is None:
        return None
    meta = json.loads(raw)
    meta.update(fields)
    if fields.get("state") in ("done", "failed") and not meta.get("finished_at"):
        meta["finished_at"] = time.time()
    client.hset(key, "meta", json.dumps(meta))
    return meta


def set_total(client: Any, preview_id: str, total: int) -> None:
    """How many parts (clusters) the preview waits for."""
    client.hset(keys.preview(preview_id), "total", int(total))


def claim_part(client: Any, preview_id: str, part: str) -> bool:
    """True for the first caller only: a part delivered twice adds its records once."""
    return bool(client.hsetnx(keys.preview(preview_id), f"part:{part}", 1))


def add_records(client: Any, preview_id: str, records: list[dict[str, Any]]) -> None:
    """Add unit records that belong to no part (those decided before the parts are sent)."""
    if records:
        units = keys.preview_units(preview_id)
        pipe = client.pipeline(transaction=True)
        pipe.rpush(units, *(json.dumps(r, sort_keys=True) for r in records))
        pipe.expire(units, TTL)
        pipe.execute()


def add_units(client: Any, preview_id: str, records: list[dict[str, Any]]) -> bool:
    """Add one part's unit records and count the part done; True when it was the last."""
    units = keys.preview_units(preview_id)
    pipe = client.pipeline(transaction=True)
    if records:
        pipe.rpush(units, *(json.dumps(r, sort_keys=True) for r in records))
    pipe.expire(units, TTL)
    pipe.hincrby(keys.preview(preview_id), "done", 1)
    pipe.hget(keys.preview(preview_id), "total")
    *_, done, total = pipe.execute()
    return int(total or 0) > 0 and int(done) >= int(total)


def meta(client: Any, preview_id: str) -> dict[str, Any] | None:
    """A preview's meta alone (no units), or None when unknown."""
    raw = client.hget(keys.preview(preview_id), "meta")
    return json.loads(raw) if raw is not None else None


COSTS = ("requests", "dry_runs", "writes")


def add_costs(client: Any, preview_id: str, **counts: int) -> None:
    """Count what a part asked of its cluster (API requests, dry-runs, writes: always 0)."""
    pipe = client.pipeline(transaction=False)
    for name in COSTS:
        if counts.get(name):
            pipe.hincrby(keys.preview(preview_id), name, int(counts[name]))
    pipe.execute()


def costs(client: Any, preview_id: str) -> dict[str, int]:
    """What the preview's parts asked of the clusters so far."""
    found = client.hmget(keys.preview(preview_id), list(COSTS))
    return {name: int(value or 0) for name, value in zip(COSTS, found)}


def load(client: Any, preview_id: str) -> dict[str, Any] | None:
    """``{meta..., done, total, units: [...], summary: {...}}``, or None when unknown."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.preview(preview_id))
    pipe.lrange(keys.preview_units(preview_id), 0, -1)
    fields, raw_units = pipe.execute()
    if not fields or "meta" not in _decoded(fields):
        return None
    fields = _decoded(fields)
    record = json.loads(fields["meta"])
    record["done"] = int(fields.get("done", 0))
    record["total"] = int(fields.get("total", 0))
    units = [json.loads(u) for u in raw_units]
    units.sort(key=lambda u: (u.get("app", ""), u.get("cluster", "")))
    record["units"] = units
    record["summary"] = summary(units)
    return record


def recent(client: Any, limit: int = 50) -> list[dict[str, Any]]:
    """The newest previews first (records without ``units``, with ``summary``)."""
    ids = client.zrevrange(keys.PREVIEWS, 0, max(0, limit - 1))
    out = []
    for pid in ids:
        record = load(client, pid.decode() if isinstance(pid, bytes) else pid)
        if record is not None:
            record.pop("units")
            out.append(record)
    return out


def summary(units: list[dict[str, Any]]) -> dict[str, int]:
    """Counts for a status line: applications and clusters that change, units refused or
    failed, units considered."""
    changing = [u for u in units if u.get("outcome") in _CHANGES]
    return {"units": len(units), "units_changed": len(changing),
            "apps_changed": len({u["app"] for u in changing}),
            "clusters_changed": len({u["cluster"] for u in changing}),
            "refused": sum(u.get("outcome") == "refused" for u in units),
            "failed": sum(u.get("outcome") == "failed" for u in units)}


def exit_code(units: list[dict[str, Any]]) -> int:
    """As ``fleetsync diff``: 0 nothing changes, 1 something does, 2 a unit refused or failed."""
    if any(u.get("outcome") in ("refused", "failed") for u in units):
        return 2
    return 1 if any(u.get("outcome") in _CHANGES for u in units) else 0


def _decoded(fields: dict[Any, Any]) -> dict[str, Any]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()}
