"""Status and recent history of every sync unit, kept in Redis.

Status is a hash per unit (phase, revision, message, last_synced_at, counts of
the last change set); history is a capped list of JSON entries, newest first.
Both are caches of what happened: Redis may be wiped, and the next reconcile
writes them again. Sources' last known revisions live here too, so that one
fetch per source per interval serves the whole fleet.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shared.locks import PREFIX, unit_id

PHASES = ("Ready", "Progressing", "Drifted", "Failed", "Suspended", "Unknown")
TRIGGERS = ("beat", "cli", "api", "webhook", "coalesced", "retry")


def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), timezone.utc) \
        .isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _status_key(unit: str) -> str:
    return f"{PREFIX}:status:{unit}"


def _history_key(unit: str) -> str:
    return f"{PREFIX}:history:{unit}"


UNITS_KEY = f"{PREFIX}:units"


@dataclass(frozen=True)
class UnitStatus:
    app: str
    cluster: str
    phase: str = "Unknown"
    revision: str = ""
    message: str = ""
    last_synced_at: str = ""
    reason: str = ""
    counts: dict[str, int] | None = None
    failed_key: str = ""            # (revision, spec hash) that failed permanently

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app, "cluster": self.cluster, "phase": self.phase,
                "revision": self.revision, "message": self.message,
                "last_synced_at": self.last_synced_at, "reason": self.reason,
                "counts": self.counts or {}}


class StatusStore:
    """Reads and writes status, history and source revisions on a decoded Redis client."""

    def __init__(self, client: Any, history_size: int = 50) -> None:
        self.client = client
        self.history_size = history_size

    # -- status ---------------------------------------------------------------
    def set_status(self, status: UnitStatus) -> None:
        unit = unit_id(status.app, status.cluster)
        mapping = {k: v for k, v in status.to_dict().items() if k != "counts"}
        mapping["counts"] = json.dumps(status.counts or {})
        mapping["failed_key"] = status.failed_key
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(_status_key(unit), mapping=mapping)
        pipe.sadd(UNITS_KEY, unit)
        pipe.execute()

    def get_status(self, app: str, cluster: str) -> UnitStatus:
        raw = self.client.hgetall(_status_key(unit_id(app, cluster)))
        return _from_hash(app, cluster, raw)

    def all_statuses(self) -> list[UnitStatus]:
        units = sorted(self.client.smembers(UNITS_KEY))
        pipe = self.client.pipeline(transaction=False)
        for unit in units:
            pipe.hgetall(_status_key(unit))
        rows = []
        for unit, raw in zip(units, pipe.execute()):
            cluster, app = unit.split("/", 1)
            rows.append(_from_hash(app, cluster, raw))
        return rows

    def forget(self, app: str, cluster: str) -> None:
        unit = unit_id(app, cluster)
        self.client.delete(_status_key(unit), _history_key(unit))
        self.client.srem(UNITS_KEY, unit)

    # -- history --------------------------------------------------------------
    def add_history(self, app: str, cluster: str, entry: dict[str, Any]) -> None:
        key = _history_key(unit_id(app, cluster))
        pipe = self.client.pipeline(transaction=False)
        pipe.lpush(key, json.dumps(entry, sort_keys=True))
        pipe.ltrim(key, 0, self.history_size - 1)
        pipe.execute()

    def history(self, app: str, cluster: str, limit: int | None = None) -> list[dict[str, Any]]:
        end = (limit or self.history_size) - 1
        return [json.loads(x) for x in self.client.lrange(_history_key(unit_id(app, cluster)), 0, end)]

    # -- sources --------------------------------------------------------------
    def set_source_revision(self, source: str, revision: str, fetched_at: float) -> None:
        self.client.hset(f"{PREFIX}:source:{source}",
                         mapping={"revision": revision, "fetched_at": repr(fetched_at)})

    def source_revision(self, source: str) -> tuple[str, float] | None:
        raw = self.client.hgetall(f"{PREFIX}:source:{source}")
        if not raw.get("revision"):
            return None
        return raw["revision"], float(raw.get("fetched_at", 0))

    def claim_fetch(self, source: str, interval: float) -> bool:
        """True for exactly one caller per source per interval, fleet-wide."""
        return bool(self.client.set(f"{PREFIX}:fetching:{source}", "1", nx=True,
                                    px=max(1, int(interval * 1000))))


def _from_hash(app: str, cluster: str, raw: dict[str, str]) -> UnitStatus:
    if not raw:
        return UnitStatus(app, cluster)
    return UnitStatus(app, cluster, raw.get("phase", "Unknown"), raw.get("revision", ""),
                      raw.get("message", ""), raw.get("last_synced_at", ""),
                      raw.get("reason", ""), json.loads(raw.get("counts") or "{}"),
                      raw.get("failed_key", ""))
