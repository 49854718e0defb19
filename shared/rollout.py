"""Rollouts in waves: which revision each cluster of an application may apply now.

An application with ``rollout:`` does not send a new revision of its source to
every cluster at once. Its clusters are split into ordered waves; a new revision
(the *target*) goes to wave 1, and wave N+1 starts only when every cluster of
wave N is Ready at the target, plus the wave's ``pause`` (or when an operator
promotes it). Clusters not admitted to the target keep the last fully rolled-out
revision (the *stable* one), so two revisions can be live at once.

    head moves ──> new rollout (stable := the old target if it was complete)
      wave k:  admit up to maxParallel clusters at a time ──> all Ready at target
               ──> pause passed (or promoted) ──> wave k+1 ... ──> stable := target
      any admitted cluster Degraded/Failed at the target ──> Halted (nothing more admitted)
      abort ──> every cluster back to stable; the aborted head is not rolled out again

Everything here is a pure function of the application's waves, the unit
statuses, the rollout ``Record`` and the time (``decide``), and of the record
alone (``allowed``: what a cluster may apply, without reading any status), so
the rules are tested without Redis. ``shared/state/rollout_store.py`` keeps the record
in Redis (one key per application, compare-and-set); the workers evaluate it
where a request decides the revision of a run.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Mapping, Sequence

from shared.protocol import Phase

EVENTS_KEPT = 20
HALTING = (Phase.DEGRADED.value, Phase.FAILED.value)


@dataclass(frozen=True)
class WavePlan:
    """One wave resolved against the fleet: its clusters (spec order), how many of them
    may apply the target at once, and how long to wait once they are all Ready."""

    clusters: tuple[str, ...]
    max_parallel: int
    pause: float = 0.0


@dataclass(frozen=True)
class Seen:
    """What a unit's status says: phase and revision, and its message (for a halt)."""

    phase: str = Phase.UNKNOWN.value
    revision: str = ""
    message: str = ""


@dataclass(frozen=True)
class Record:
    """An application's rollout as Redis keeps it (JSON)."""

    target: str = ""                 # the revision being rolled out
    stable: str = ""                 # the last revision every wave was Ready at ("" none yet)
    wave: int = 0                    # index of the current wave; len(waves): every wave done
    admitted: tuple[str, ...] = ()   # clusters allowed to apply the target
    started_at: float = 0.0          # when the current wave started
    settled_at: float = 0.0          # when every cluster of the current wave was Ready
    paused: str = ""                 # "by USER at TIME" while paused
    halted: str = ""                 # why the rollout stopped
    promoted: int = -1               # waves up to this index start whatever their gates say
    aborted: str = ""                # a head that was aborted: not rolled out while it is the head
    urgent: bool = False             # a revert with urgentOnRevert: every cluster at once
    events: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "Record":
        if not text:
            return cls()
        raw = json.loads(text)
        known = {f: raw[f] for f in cls.__dataclass_fields__ if f in raw}
        known["admitted"] = tuple(known.get("admitted", ()))
        known["events"] = tuple(known.get("events", ()))
        return cls(**known)

    def complete(self, waves: int) -> bool:
        return bool(self.target) and self.wave >= waves and self.stable == self.target


@dataclass(frozen=True)
class Decision:
    record: Record
    allowed: dict[str, str]                      # cluster -> revision ("": wait, apply nothing)
    started: tuple[str, ...] = ()                # clusters newly admitted to the target
    events: tuple[dict[str, Any], ...] = ()      # what happened in this decision
    pause_ends: float = 0.0                      # a wave just began its pause, until then

    def state(self, waves: int) -> str:
        return state_of(self.record, waves)


def resolve_max_parallel(text: str | None, size: int) -> int:
    """``maxParallel`` (a count, or a percent of the wave, rounded up) as a count >= 1."""
    if not text:
        return max(1, size)
    if text.endswith("%"):
        return max(1, math.ceil(size * float(text[:-1]) / 100))
    return max(1, int(text))


def allowed(record: Record, cluster: str) -> str:
    """The revision ``cluster`` may apply as the record stands ("" : none yet)."""
    if record.urgent or cluster in record.admitted:
        return record.target
    return record.stable


def inferred_stable(statuses: Mapping[str, Seen]) -> str:
    """With no record (the first look, or Redis was wiped): the revision every cluster is
    Ready at, if they all are at one; else none, and the first rollout starts from zero."""
    revisions = {s.revision for s in statuses.values() if s.phase == Phase.READY.value}
    ready = all(s.phase == Phase.READY.value for s in statuses.values())
    return revisions.pop() if statuses and ready and len(revisions) == 1 else ""


def decide(waves: Sequence[WavePlan], record: Record, head: str, statuses: Mapping[str, Seen],
           now: float, *, revert: bool = False, urgent_on_revert: bool = False,
           held: Callable[[str], bool] = lambda _: False) -> Decision:
    """The next record and every cluster's allowed revision, for source revision ``head``.
    ``held(cluster)``: a change window holds that cluster's unit now; it is not admitted
    to the target (its wave waits for it, promoted or not) until the window opens."""
    events: list[dict[str, Any]] = []
    everyone = [c for w in waves for c in w.clusters]
    if not record.target:
        stable = inferred_stable({c: statuses.get(c, Seen()) for c in everyone})
        record = Record(target=stable, stable=stable, wave=len(waves),
                        admitted=tuple(everyone) if stable else (), paused=record.paused,
                        events=record.events)
    if head and head != record.target and head != record.aborted:
        stable = record.target if record.complete(len(waves)) else record.stable
        urgent = revert and urgent_on_revert
        record = Record(target=head, stable=stable, started_at=now, paused=record.paused,
                        urgent=urgent, events=record.events)
        events.append(_event(now, f"rollout of {head[:12]} started" + (
            f" (stable: {stable[:12]})" if stable else " (first rollout)")
            + ("; a revert with urgentOnRevert: every cluster at once" if urgent else "")))
    record, started, pause_ends = _advance(waves, record, statuses, now, events, held)
    if record.wave >= len(waves) and record.stable != record.target and not record.halted:
        record = replace(record, stable=record.target)
        events.append(_event(now, f"rollout of {record.target[:12]} complete: every wave Ready"))
    record = replace(record, events=(record.events + tuple(events))[-EVENTS_KEPT:])
    return Decision(record, {c: allowed(record, c) for c in everyone}, tuple(started),
                    tuple(events), pause_ends)


def _advance(waves: Sequence[WavePlan], record: Record, statuses: Mapping[str, Seen],
             now: float, events: list[dict[str, Any]],
             held: Callable[[str], bool]) -> tuple[Record, list[str], float]:
    started: list[str] = []
    if record.halted:
        return record, started, 0.0

    def ready(c: str) -> bool:
        seen = statuses.get(c, Seen())
        return seen.phase == Phase.READY.value and seen.revision == record.target

    while record.wave < len(waves):
        k, wave = record.wave, waves[record.wave]
        promoted = record.promoted >= k
        admitted = list(record.admitted)
        if promoted or record.urgent or not record.paused:
            busy = [c for c in wave.clusters if c in admitted and not ready(c)]
            for c in wave.clusters:
                if c not in admitted and (promoted or record.urgent
                                          or len(busy) < wave.max_parallel) and not held(c):
                    admitted.append(c)
                    busy.append(c)
                    started.append(c)
        record = replace(record, admitted=tuple(admitted))
        for c in wave.clusters:
            seen = statuses.get(c, Seen())
            if c in admitted and seen.revision == record.target and seen.phase in HALTING:
                why = f"Halted at wave {k + 1}: {c} {seen.phase}: {seen.message}"
                events.append(_event(now, why))
                return replace(record, halted=why), started, 0.0
        gate_open = record.promoted > k or record.urgent
        if not gate_open:
            if not all(ready(c) for c in wave.clusters):
                return record, started, 0.0
            just_settled = not record.settled_at
            if just_settled:
                record = replace(record, settled_at=now)
                events.append(_event(now, f"wave {k + 1} Ready at {record.target[:12]}"
                                     + (f"; pause {wave.pause:g}s" if wave.pause else "")))
            if record.paused or now < record.settled_at + wave.pause:
                ends = record.settled_at + wave.pause if just_settled and not record.paused else 0.0
                return record, started, ends
        record = replace(record, wave=k + 1, settled_at=0.0, started_at=now)
        if k + 1 < len(waves):
            events.append(_event(now, f"wave {k + 2} started at {record.target[:12]}"
                                 + (" (promoted)" if record.promoted > k else "")))
    return record, started, 0.0


# -- operators' commands (pure: the record before -> after) ------------------------------

def pause(record: Record, by: str, at: str) -> Record:
    return replace(record, paused=f"by {by} at {at}",
                   events=_log(record, f"paused by {by}"))


def resume(record: Record, by: str) -> Record:
    return replace(record, paused="", events=_log(record, f"resumed by {by}"))


def promote(record: Record, waves: int, by: str, wave: int | None = None) -> Record:
    """Start wave ``wave`` (1-based; default: the one after the current) and every wave
    before it now, whatever their gates; a halt is lifted too."""
    if not record.target or record.wave >= waves:
        raise ValueError("no rollout in progress: nothing to promote")
    index = (wave - 1) if wave is not None else record.wave + 1
    if not 0 <= index < waves:
        raise ValueError(f"there is no wave {index + 1}: the rollout has {waves} wave(s)")
    return replace(record, promoted=max(record.promoted, index), halted="",
                   events=_log(record, f"wave {index + 1} promoted by {by}"))


def abort(record: Record, waves: int, by: str) -> Record:
    """Back to the last fully rolled-out revision, everywhere, at once; the aborted head
    is not rolled out again (a newer commit starts a new rollout)."""
    if not record.stable:
        raise ValueError("no revision was fully rolled out yet: there is nothing to go back to")
    if record.target == record.stable:
        raise ValueError(f"nothing to abort: {record.stable[:12]} is rolled out everywhere")
    return replace(record, aborted=record.target, target=record.stable, admitted=(),
                   wave=waves, halted="", urgent=False, promoted=-1,
                   events=_log(record, f"rollout of {record.target[:12]} aborted by {by}: "
                                       f"back to {record.stable[:12]}"))


def state_of(record: Record, waves: int) -> str:
    """One word for the rollout: Complete, Aborted, Halted, Paused or Progressing."""
    if record.aborted and record.aborted != record.target and record.target == record.stable:
        return "Aborted"
    if record.halted:
        return "Halted"
    if record.complete(waves):
        return "Complete"
    return "Paused" if record.paused else "Progressing"


def _event(at: float, message: str) -> dict[str, Any]:
    return {"at": at, "message": message}


def _log(record: Record, message: str) -> tuple[dict[str, Any], ...]:
    return (record.events + (_event(time.time(), message),))[-EVENTS_KEPT:]

