"""Status and recent history of every sync unit, kept in Redis.

Status is a hash per unit (phase, revision, message, last sync, counts of the
last change set); history is a capped list of JSON entries, newest first. Both
are caches of what happened: Redis may be wiped, and the next reconcile writes
them again. Sources' last known revisions live here too, so that one fetch per
source per interval serves the whole fleet, with the author, date and subject of
each revision's commit (read once from the Git mirror by the fetch: a pull worker
has no mirror, and history entries name who committed), and the marks with which
``fleetsync server`` keeps a burst of push webhooks to one waiting fetch.

The outcome of a run is written together with the protocol's own keys
(``shared/state/runs.py`` calls ``status_ops`` and ``HistoryEntry.ops`` inside its
compare-and-set), so status and the end of a run can never disagree.
"""

from __future__ import annotations

import json
import time
from dataclasses import KW_ONLY, asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Protocol

from shared.state import keys
from shared.protocol import Phase

def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), timezone.utc) \
        .isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Writes(Protocol):
    def add(self, cmd: str, key: str, *args: Any) -> None: ...


@dataclass(frozen=True)
class UnitStatus:
    app: str
    cluster: str
    _: KW_ONLY                      # the rest by name: thirteen positions hide meaning
    phase: str = Phase.UNKNOWN.value
    revision: str = ""
    message: str = ""
    last_synced_at: str = ""
    reason: str = ""
    counts: dict[str, int] | None = None
    failed_key: str = ""            # (revision, spec hash) that failed permanently
    run_id: str = ""                # the run whose outcome this is (health follow-ups check it)
    health_deadline: float = 0.0    # Progressing on health: Degraded if not healthy by then
    last_success_at: str = ""       # the last run that applied (kept when a later one fails)
    interval: float = 0.0           # the unit's reconcile interval: stale past 3 of them
    on_removal: str = ""            # the application's onRemoval, for when it leaves the spec
    applied_key: str = ""           # (revision, spec hash) of the last run that applied
    held_by: str = ""               # a change window holds it: its name
    held_until: str = ""            # ... until then (ISO 8601 UTC; "" when not soon)
    held_revision: str = ""         # ... and this newer revision waits

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app, "cluster": self.cluster, "phase": str(self.phase),
                "revision": self.revision, "message": self.message,
                "last_synced_at": self.last_synced_at, "reason": self.reason,
                "counts": self.counts or {}, "last_success_at": self.last_success_at,
                "interval": self.interval, "held_by": self.held_by,
                "held_until": self.held_until, "held_revision": self.held_revision}

    def mapping(self) -> dict[str, str]:
        """The hash fields to write. ``last_success_at`` and ``interval`` are written only
        when known, so a failed run keeps the last success."""
        out = {k: str(v) for k, v in self.to_dict().items()
               if k not in ("counts", "last_success_at", "interval")}   # held_*: always,
                                                                         # "" lifts a hold
        out["counts"] = json.dumps(self.counts or {})
        out["failed_key"] = self.failed_key
        out["run_id"] = self.run_id
        out["health_deadline"] = repr(self.health_deadline)
        if self.last_success_at:
            out["last_success_at"] = self.last_success_at
        if self.interval:
            out["interval"] = repr(self.interval)
        if self.on_removal:
            out["on_removal"] = self.on_removal
        if self.applied_key:
            out["applied_key"] = self.applied_key
        return out


def status_ops(ops: _Writes, status: UnitStatus) -> None:
    unit = keys.unit_id(status.app, status.cluster)
    ops.add("HSET", keys.status(unit), *[x for kv in status.mapping().items() for x in kv])
    ops.add("SADD", keys.UNITS, unit)
    ops.add("SADD", keys.cluster_units(status.cluster), unit)


@dataclass(frozen=True)
class HistoryEntry:
    """One sync in a unit's history: what triggered it, what it did, when."""

    _: KW_ONLY
    revision: str
    trigger: str
    result: str
    message: str
    started_at: str
    finished_at: str
    run_id: str = ""
    task_id: str = ""
    changes: dict[str, int] = field(default_factory=dict)
    requests: int | None = None
    writes: int | None = None
    lock_wait_s: float | None = None
    drift: dict[str, list[str]] = field(default_factory=dict)   # corrected: object -> fields
    hooks: list[str] = field(default_factory=list)    # hooks run (``PreSync Job/web/migrate``)
    author: str = ""                # the revision's commit: who wrote it, when, its subject
    author_email: str = ""
    committed_at: str = ""
    subject: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def ops(self, ops: _Writes, unit: str, size: int) -> None:
        ops.add("LPUSHCAP", keys.history(unit), self.to_json(), size)


class StatusStore:
    """Reads and writes status, history and source revisions on a decoded Redis client."""

    def __init__(self, client: Any, history_size: int = 50) -> None:
        self.client = client
        self.history_size = history_size

    # -- status ---------------------------------------------------------------
    def set_status(self, status: UnitStatus) -> None:
        pipe = self.client.pipeline(transaction=False)
        status_ops(_PipeWrites(pipe), status)
        pipe.execute()

    def get_status(self, app: str, cluster: str) -> UnitStatus:
        raw = self.client.hgetall(keys.status(keys.unit_id(app, cluster)))
        return _from_hash(app, cluster, raw)

    def all_statuses(self, cluster: str | None = None) -> list[UnitStatus]:
        """Every unit's status, or only ``cluster``'s (from the cluster's own index)."""
        units = sorted(self.client.smembers(keys.UNITS) if cluster is None
                       else self.cluster_units(cluster))
        pipe = self.client.pipeline(transaction=False)
        for unit in units:
            pipe.hgetall(keys.status(unit))
        rows = []
        for unit, raw in zip(units, pipe.execute()):
            app, cluster = keys.split_unit(unit)
            rows.append(_from_hash(app, cluster, raw))
        return rows

    def cluster_units(self, cluster: str) -> set[str]:
        """The units of ``cluster``. Units whose status was written before clusters had an
        index of their own are put in it first, once (reading the fleet-wide set)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(keys.cluster_indexed(cluster))
        pipe.smembers(keys.cluster_units(cluster))
        indexed, units = pipe.execute()
        if indexed:
            return set(units)
        earlier = [u for u in self.client.smembers(keys.UNITS) if keys.split_unit(u)[1] == cluster]
        pipe = self.client.pipeline(transaction=False)
        if earlier:
            pipe.sadd(keys.cluster_units(cluster), *earlier)
        pipe.set(keys.cluster_indexed(cluster), "1")
        pipe.execute()
        return set(units) | set(earlier)

    def forget(self, app: str, cluster: str) -> None:
        unit = keys.unit_id(app, cluster)
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(keys.status(unit), keys.history(unit))
        pipe.srem(keys.UNITS, unit)
        pipe.srem(keys.cluster_units(cluster), unit)
        pipe.execute()

    # -- history --------------------------------------------------------------
    def add_history(self, app: str, cluster: str, entry: dict[str, Any]) -> None:
        key = keys.history(keys.unit_id(app, cluster))
        pipe = self.client.pipeline(transaction=False)
        pipe.lpush(key, json.dumps(entry, sort_keys=True))
        pipe.ltrim(key, 0, self.history_size - 1)
        pipe.execute()

    def history(self, app: str, cluster: str, limit: int | None = None) -> list[dict[str, Any]]:
        end = (limit or self.history_size) - 1
        return [json.loads(x) for x in
                self.client.lrange(keys.history(keys.unit_id(app, cluster)), 0, end)]

    # -- sources --------------------------------------------------------------
    def set_source_revision(self, source: str, revision: str, fetched_at: float,
                            commit: Mapping[str, str] | None = None, ref: str = "") -> None:
        """A fetch succeeded: its revision, and no standing error. ``commit`` (the
        ``COMMIT_FIELDS`` of the revision's commit) is kept beside it for workers
        without the Git mirror (pull workers) and for the server. ``ref``: the branch
        followed when the spec does not name it (``main (default branch)``), else ""."""
        fields = {"revision": revision, "fetched_at": repr(fetched_at), "error": "", "ref": ref}
        if commit:
            fields["commit_revision"] = revision
            fields.update({f"commit_{k}": str(commit.get(k, "")) for k in COMMIT_FIELDS})
        self.client.hset(keys.source(source), mapping=fields)

    def set_source_error(self, source: str, message: str) -> None:
        """A fetch was refused (an unsigned head, a missing ref): the last good revision
        stays the source's, and this says why it does not move."""
        self.client.hset(keys.source(source), mapping={"error": message,
                                                       "error_at": repr(time.time())})

    def source_state(self, source: str) -> tuple[str, str]:
        """(last good revision or "", standing fetch error or "") in one read."""
        record = self.source_record(source)
        return record.revision, record.error

    def source_record(self, source: str) -> "SourceRecord":
        """Everything recorded about a source, in one read."""
        return SourceRecord.of(source, self.client.hgetall(keys.source(source)))

    # -- push notifications (fleetsync server) -------------------------------------------
    def want_fetch(self, source: str, ttl: float) -> bool:
        """A push asks for a fetch: True when none is waiting to begin already (then the
        caller enqueues one); the mark goes when a fetch of the source begins, or after
        ``ttl`` seconds should that fetch be lost."""
        return bool(self.client.set(fetch_wanted_key(source), "1", nx=True,
                                    px=max(1, int(ttl * 1000))))

    def fetch_begins(self, source: str) -> None:
        """A fetch of ``source`` begins: a push from now on needs a fetch of its own."""
        self.client.delete(fetch_wanted_key(source))

    def delivery_seen(self, source: str, delivery: str) -> bool:
        """Whether a forge's delivery id was handled in the last ``record_delivery`` ttl."""
        return bool(self.client.exists(delivery_key(source, delivery)))

    def record_delivery(self, source: str, delivery: str, ttl: float) -> None:
        """A delivery was handled: the same id within ``ttl`` seconds is a redelivery."""
        self.client.set(delivery_key(source, delivery), "1", px=max(1, int(ttl * 1000)))

    def source_revision(self, source: str) -> tuple[str, float] | None:
        raw = self.client.hgetall(keys.source(source))
        if not raw.get("revision"):
            return None
        return raw["revision"], float(raw.get("fetched_at", 0))

    def claim_fetch(self, source: str, interval: float) -> bool:
        """True for exactly one caller per source per interval, fleet-wide."""
        return bool(self.client.set(keys.fetching(source), "1", nx=True,
                                    px=max(1, int(interval * 1000))))


COMMIT_FIELDS = ("author", "author_email", "committed_at", "subject")


@dataclass(frozen=True)
class SourceRecord:
    """A source as the fetches left it: revision, standing error, the revision's commit."""

    name: str
    revision: str = ""
    error: str = ""
    fetched_at: float = 0.0
    commit_revision: str = ""               # the revision that ``commit`` describes
    commit: dict[str, str] = field(default_factory=dict)    # COMMIT_FIELDS
    ref: str = ""                           # the branch a defaultBranch source followed

    @classmethod
    def of(cls, name: str, raw: Mapping[str, str]) -> "SourceRecord":
        commit = {k: raw.get(f"commit_{k}", "") for k in COMMIT_FIELDS}
        return cls(name, raw.get("revision", ""), raw.get("error", ""),
                   _float(raw.get("fetched_at")), raw.get("commit_revision", ""),
                   commit if raw.get("commit_revision") else {}, raw.get("ref", ""))


def fetch_wanted_key(source: str) -> str:
    return f"{keys.source(source)}:fetch-wanted"


def delivery_key(source: str, delivery: str) -> str:
    safe = "".join(c for c in delivery if c.isalnum() or c in "-_.")[:100]
    return f"{keys.source(source)}:delivery:{safe}"


class _PipeWrites:
    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def add(self, cmd: str, key: str, *args: Any) -> None:
        if cmd == "LPUSHCAP":               # the script's push-and-trim (shared/state/cas.py)
            self.pipe.lpush(key, args[0])
            self.pipe.ltrim(key, 0, int(args[1]) - 1)
        else:
            self.pipe.execute_command(cmd, key, *args)


def _from_hash(app: str, cluster: str, raw: dict[str, str]) -> UnitStatus:
    if not raw:
        return UnitStatus(app, cluster)
    return UnitStatus(app, cluster, phase=raw.get("phase", Phase.UNKNOWN.value),
                      revision=raw.get("revision", ""), message=raw.get("message", ""),
                      last_synced_at=raw.get("last_synced_at", ""), reason=raw.get("reason", ""),
                      counts=json.loads(raw.get("counts") or "{}"),
                      failed_key=raw.get("failed_key", ""), run_id=raw.get("run_id", ""),
                      health_deadline=_float(raw.get("health_deadline")),
                      last_success_at=raw.get("last_success_at", ""),
                      interval=_float(raw.get("interval")), on_removal=raw.get("on_removal", ""),
                      applied_key=raw.get("applied_key", ""), held_by=raw.get("held_by", ""),
                      held_until=raw.get("held_until", ""),
                      held_revision=raw.get("held_revision", ""))

def _float(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0
