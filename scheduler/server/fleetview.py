"""The fleet as the server shows it: unit rows, the matrix, per-revision roll-ups (pure).

Everything here is computed from three reads (every unit's status, the
sources' records, the fleet spec) so that one page or API answer costs one
pipelined Redis round trip whatever the size of the fleet. The spec says what
should exist (a unit never synced yet shows as ``Unknown``) and each cluster's
labels; Redis says where each unit stands. A unit that Redis knows and the
spec no longer has is shown as Redis has it until the next reconcile forgets it.

A revision's roll-up counts the (unsuspended) units of its source: *applied* are those
whose last run applied that revision (Ready, Progressing, Degraded, Drifted),
and the rest are named by what holds them (Failed at it, or still at another
revision): ``abc1234: 480/500 applied, 470 Ready, 3 Degraded``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from shared.protocol import Phase
from shared.spec.model import Fleet
from shared.state.status import SourceRecord, UnitStatus

APPLIED = (Phase.READY.value, Phase.PROGRESSING.value, Phase.DEGRADED.value,
           Phase.DRIFTED.value)
PHASES = tuple(p.value for p in Phase)
STALE_INTERVALS = 3
SHORT = 7


@dataclass(frozen=True)
class Row:
    """One sync unit as the dashboard and ``/api/v1/units`` show it."""

    app: str
    cluster: str
    phase: str
    revision: str = ""
    message: str = ""
    reason: str = ""
    last_synced_at: str = ""
    age_s: float | None = None
    stale: bool = False
    source: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    suspended: bool = False                     # the spec suspends the application
    held_by: str = ""                           # a change window holds it (until, waiting)
    held_until: str = ""
    held_revision: str = ""

    @property
    def shown(self) -> str:
        """The phase a person is told: a stale unit is ``Unknown`` (what Redis says of it
        may no longer be true)."""
        return Phase.UNKNOWN.value if self.stale else self.phase

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app, "cluster": self.cluster, "unit": f"{self.cluster}/{self.app}",
                "phase": self.phase, "shown_phase": self.shown, "stale": self.stale,
                "revision": self.revision, "message": self.message, "reason": self.reason,
                "last_synced_at": self.last_synced_at, "age_s": self.age_s,
                "source": self.source, "labels": dict(self.labels), "suspended": self.suspended,
                "held_by": self.held_by, "held_until": self.held_until,
                "held_revision": self.held_revision}


def parse_labels(text: str) -> dict[str, str]:
    """``env=production,region=eu`` as a mapping; a bare ``key`` means any value."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if part:
            key, _, value = part.partition("=")
            out[key.strip()] = value.strip()
    return out


def label_matches(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(k in labels and (not v or labels[k] == v) for k, v in wanted.items())


def rows(fleet: Fleet | None, statuses: Iterable[UnitStatus], now: datetime,
         labels: Mapping[str, str] | None = None) -> list[Row]:
    """Every unit, spec order first, then units only Redis knows; filtered by cluster labels."""
    known = {(s.app, s.cluster): s for s in statuses}
    order = fleet.units() if fleet else []
    order += sorted((k for k in known if k not in set(order)), key=lambda k: (k[1], k[0]))
    out = []
    for app, cluster in order:
        spec_cluster = fleet.clusters.get(cluster) if fleet else None
        cluster_labels = dict(spec_cluster.labels) if spec_cluster else {}
        if labels and not label_matches(cluster_labels, labels):
            continue
        spec_app = fleet.applications.get(app) if fleet else None
        out.append(_row(app, cluster, known.get((app, cluster)), now,
                        spec_app.source if spec_app else "", cluster_labels,
                        bool(spec_app and spec_app.suspend)))
    return out


def _row(app: str, cluster: str, status: UnitStatus | None, now: datetime, source: str,
         labels: dict[str, str], suspended: bool = False) -> Row:
    if status is None:
        phase = Phase.SUSPENDED.value if suspended else Phase.UNKNOWN.value
        return Row(app, cluster, phase, message="never synced", source=source, labels=labels,
                   suspended=suspended)
    age_s, stale = freshness(status.last_synced_at, status.interval, now)
    return Row(app, cluster, status.phase, status.revision, status.message, status.reason,
               status.last_synced_at, age_s, stale, source, labels, suspended,
               held_by=status.held_by, held_until=status.held_until,
               held_revision=status.held_revision)


def freshness(stamp: str, interval: float, now: datetime) -> tuple[float | None, bool]:
    """Seconds since ``stamp`` (None: never) and whether that is past 3 intervals."""
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None, False
    age_s = round(max(0.0, (now - then).total_seconds()), 1)
    return age_s, interval > 0 and age_s > STALE_INTERVALS * interval


@dataclass(frozen=True)
class Matrix:
    """Rows by columns of unit rows; ``by`` says which axis holds the clusters."""

    by: str                                     # "cluster" (rows are clusters) or "app"
    row_names: list[str]
    column_names: list[str]
    cells: dict[tuple[str, str], Row]           # (row name, column name) -> unit
    row_labels: dict[str, dict[str, str]]


def matrix(units: list[Row], by: str = "auto") -> Matrix:
    """Clusters by applications; ``auto`` puts the longer list down the page."""
    clusters = list(dict.fromkeys(u.cluster for u in units))
    apps = list(dict.fromkeys(u.app for u in units))
    if by == "auto":
        by = "cluster" if len(clusters) >= len(apps) else "app"
    labels = {u.cluster: dict(u.labels) for u in units}
    if by == "cluster":
        return Matrix(by, clusters, apps, {(u.cluster, u.app): u for u in units}, labels)
    return Matrix("app", apps, clusters, {(u.app, u.cluster): u for u in units}, labels)


def counts(units: Iterable[Row]) -> dict[str, int]:
    found: dict[str, int] = {}
    for unit in units:
        found[unit.shown] = found.get(unit.shown, 0) + 1
    return {p: found[p] for p in PHASES if p in found}


@dataclass(frozen=True)
class Rollup:
    """How far one revision of a source has gone through the fleet."""

    source: str
    revision: str
    current: bool                               # the source's revision now
    total: int                                  # units of the source
    applied: list[Row]
    by_phase: dict[str, list[str]]              # units at this revision, by shown phase
    elsewhere: dict[str, list[str]]             # the source's other units, by their revision
    commit: dict[str, str]
    ref: str = ""                               # current: the default branch it came from

    @property
    def summary(self) -> str:
        """``abc1234: 480/500 applied, 470 Ready, 3 Degraded``."""
        parts = [f"{self.revision[:SHORT] or '(none)'}: {len(self.applied)}/{self.total} applied"]
        parts += [f"{len(self.by_phase[p])} {p}" for p in PHASES if self.by_phase.get(p)]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "revision": self.revision, "current": self.current,
                "summary": self.summary, "total": self.total, "applied": len(self.applied),
                "phases": {p: len(u) for p, u in self.by_phase.items()},
                "units": self.by_phase, "not_applied": self._not_applied(),
                "other_revisions": {r: len(u) for r, u in self.elsewhere.items()},
                "commit": self.commit, "ref": self.ref}

    def _not_applied(self) -> list[str]:
        at = [u for p, units in self.by_phase.items() if p not in APPLIED for u in units]
        return at + [u for units in self.elsewhere.values() for u in units]

    @property
    def percent(self) -> int:
        return round(100 * len(self.applied) / self.total) if self.total else 0


def rollups(units: list[Row], sources: Mapping[str, SourceRecord]) -> list[Rollup]:
    """One roll-up per revision that a unit of the fleet is at, the sources' current
    revisions first (newest progress is what people look for)."""
    by_source: dict[str, list[Row]] = {}
    for unit in units:
        if unit.suspended or unit.phase == Phase.SUSPENDED.value:
            continue                    # never moves to a new revision: not part of a rollout
        by_source.setdefault(unit.source, []).append(unit)
    out: list[Rollup] = []
    for name, members in sorted(by_source.items()):
        record = sources.get(name) or SourceRecord(name)
        revisions = list(dict.fromkeys(
            [record.revision] * bool(record.revision) + [u.revision for u in members if u.revision]))
        for revision in revisions:
            out.append(rollup(name, revision, members, record))
    return sorted(out, key=lambda r: (not r.current, r.source))


def rollup(source: str, revision: str, members: list[Row], record: SourceRecord) -> Rollup:
    at = [u for u in members if u.revision == revision]
    by_phase: dict[str, list[str]] = {}
    for unit in at:
        by_phase.setdefault(unit.shown, []).append(f"{unit.cluster}/{unit.app}")
    elsewhere: dict[str, list[str]] = {}
    for unit in members:
        if unit.revision != revision:
            elsewhere.setdefault(unit.revision or "(never synced)", []).append(
                f"{unit.cluster}/{unit.app}")
    commit = record.commit if record.commit_revision == revision else {}
    return Rollup(source, revision, revision == record.revision, len(members),
                  [u for u in at if u.phase in APPLIED], by_phase, elsewhere, dict(commit),
                  record.ref if revision == record.revision else "")


def find_rollup(all_rollups: list[Rollup], revision: str) -> list[Rollup]:
    """The roll-ups of ``revision`` (a full SHA or a prefix of at least 4 characters)."""
    if len(revision) < 4:
        return []
    return [r for r in all_rollups if r.revision.startswith(revision.lower())]


def last_drift(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest history entry that corrected drift: when, at which revision, which fields."""
    for entry in history:
        if entry.get("drift"):
            return {"at": entry.get("finished_at", ""), "revision": entry.get("revision", ""),
                    "run_id": entry.get("run_id", ""), "task_id": entry.get("task_id", ""),
                    "drift": entry["drift"]}
    return None
