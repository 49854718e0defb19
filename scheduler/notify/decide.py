"""What the notifier says, decided from the units' statuses: roll-ups, not floods.

A central notifier sees the whole fleet, so it can speak once per change that
matters instead of once per unit and per sync (Flux's 22 Slack messages in
3 s). Pure functions of what was read, and of ``now``; the loop in
``loop`` reads Redis, calls them, claims each message's key once
fleet-wide and hands the winners to ``send``:

- ``rollup(view, ...)``: one per (revision, application), once the revision
  has *settled* across the application's clusters: every targeted cluster has
  a status at that revision in a final phase (Ready, Degraded, Failed,
  Drifted). ``abc12345 web: 3/3 Ready in 42 s``, or ``2/3 Ready in 40 s;
  staging Failed: ...``. "In" runs from the first history entry at that
  revision to the last unit's settling. A revision that has not settled
  ``settle_timeout`` after the notifier first saw it is reported as it stands,
  naming the clusters still not there. Before it settles, a ``pending``
  message (commit statuses only) says it is rolling out.
- ``fleet_rollup(...)``: one per revision over several applications, for a
  fleet-wide commit status (context ``fleetsync``).
- ``held(...)``: one per unit and revision that a hold keeps back (a change
  window, or a hold put on the cluster): ``abc12345 production/web held by window
  friday-freeze until 2026-12-14T05:00:00Z`` (or ``held on the cluster``: its
  ``configmap/fleetsync-hold``), sent to routes with ``held`` in
  their ``events``, whatever the ticks in between.
- ``transitions(...)``: one message per change of a unit into or out of
  Failed/Degraded, once the new state has held for ``debounce`` seconds (a
  flap shorter than that says nothing). Transient phases (Progressing,
  Unknown, Suspended) neither start nor end such a state.

The application's revision is its source's current one: a revision superseded
before it settled is not reported (the next one is). Each ``Message.key`` is
unique to what it reports, so a notifier that restarts, or a second one
running, never sends it twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Mapping, Sequence

from shared.protocol import Phase

FINAL = frozenset({Phase.READY.value, Phase.DEGRADED.value, Phase.FAILED.value, Phase.DRIFTED.value})
BAD = frozenset({Phase.FAILED.value, Phase.DEGRADED.value})
GOOD = frozenset({Phase.READY.value, Phase.DRIFTED.value})
MESSAGE_CHARS = 200          # a unit's message is cut to this in a roll-up line
_UNIT_PREFIX = re.compile(r"^[^\s/]+/[^\s@]+ @[0-9a-f]+: ")


@dataclass(frozen=True)
class UnitView:
    """What the notifier reads of one unit: its status and, when needed, its history."""

    cluster: str
    phase: str = Phase.UNKNOWN.value
    revision: str = ""
    message: str = ""
    run_id: str = ""
    history: tuple[Mapping[str, Any], ...] = ()      # newest first, as StatusStore returns it
    held_by: str = ""                                 # a hold keeps ``held_revision`` back
    held_until: str = ""
    held_revision: str = ""


@dataclass(frozen=True)
class AppView:
    app: str
    revision: str                        # the source's current revision ("" while unknown)
    targets: tuple[str, ...]             # the clusters the spec targets
    units: Mapping[str, UnitView]        # by cluster; a target without status is missing
    first_seen: float | None = None      # when the notifier first saw a unit at ``revision``


@dataclass(frozen=True)
class Message:
    """One notification; ``key`` is what is claimed so that it is sent once, fleet-wide."""

    key: str
    event: str                           # rollup | pending | failure | recovery | held
    revision: str
    text: str
    state: str                           # commit status: success | failure | pending
    app: str | None = None               # None: fleet-wide
    route: str | None = None             # fleet-wide messages are made per route
    clusters: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    summary: str = ""                    # the text without revision and name (a commit status)

    def payload(self) -> dict[str, Any]:
        """The generic webhook's JSON body."""
        return {"event": self.event, "application": self.app, "revision": self.revision,
                "state": self.state, "text": self.text,
                "clusters": {k: dict(v) for k, v in self.clusters.items()}}


@dataclass(frozen=True)
class Rollup:
    """Where one application stands at one revision across its clusters."""

    app: str
    revision: str
    phases: Mapping[str, str]            # cluster -> phase at ``revision`` (targets only)
    messages: Mapping[str, str]
    missing: Mapping[str, str]           # cluster -> why it is not there (not at rev / not final)
    settled: bool
    timed_out: bool = False
    seconds: float | None = None

    @property
    def ready(self) -> int:
        return sum(1 for p in self.phases.values() if p == Phase.READY.value)

    @property
    def total(self) -> int:
        return len(self.phases) + len(self.missing)

    @property
    def state(self) -> str:
        if not self.settled and not self.timed_out:
            return "pending"
        return "success" if self.ready == self.total else "failure"


def short(revision: str) -> str:
    return revision[:8]


def parse_time(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


# -- roll-ups -----------------------------------------------------------------

def rollup(view: AppView, now: float, settle_timeout: float) -> Rollup | None:
    """The application at its revision, or None when no unit has reached it yet."""
    if not view.revision or not view.targets:
        return None
    phases: dict[str, str] = {}
    messages: dict[str, str] = {}
    missing: dict[str, str] = {}
    for cluster in view.targets:
        unit = view.units.get(cluster)
        if unit is None or unit.revision != view.revision:
            at = f"at {short(unit.revision)}" if unit and unit.revision else "no status yet"
            missing[cluster] = f"{unit.phase} {at}" if unit and unit.revision else at
        elif unit.phase not in FINAL:
            missing[cluster] = unit.phase
        else:
            phases[cluster] = unit.phase
            messages[cluster] = unit.message
    if not any(view.units[c].revision == view.revision for c in view.targets if c in view.units):
        return None
    settled = not missing
    timed_out = (not settled and view.first_seen is not None
                 and now - view.first_seen >= settle_timeout)
    seconds = _duration(view, phases) if settled or timed_out else None
    return Rollup(view.app, view.revision, phases, messages, missing, settled, timed_out, seconds)


def _duration(view: AppView, phases: Mapping[str, str]) -> float | None:
    """From the first history entry at the revision to the last unit's settling."""
    starts: list[float] = []
    settles: list[float] = []
    for cluster in phases:
        at_rev = [e for e in view.units[cluster].history if e.get("revision") == view.revision]
        for entry in at_rev:
            start = parse_time(str(entry.get("started_at", "")))
            if start is not None:
                starts.append(start)
        ends = [parse_time(str(e.get("finished_at", ""))) for e in at_rev if e.get("result") in FINAL]
        final = [t for t in ends if t is not None]
        if final:
            settles.append(min(final))     # the first time this unit settled at the revision
    if not starts or not settles:
        return None
    return max(0.0, max(settles) - min(starts))


def rollup_text(r: Rollup) -> str:
    return f"{short(r.revision)} {r.app}: {rollup_summary(r)}"


def rollup_summary(r: Rollup) -> str:
    head = f"{r.ready}/{r.total} Ready"
    if r.seconds is not None:
        head += f" in {r.seconds:.1f} s" if r.seconds < 10 else f" in {r.seconds:.0f} s"
    parts = [head]
    for cluster, phase in r.phases.items():
        if phase != Phase.READY.value:
            parts.append(f"{cluster} {phase}: {first_line(r.messages.get(cluster, ''))}".rstrip(": "))
    if r.missing:
        what = "not settled after the settle timeout" if r.timed_out else "waiting for"
        parts.append(f"{what}: " + ", ".join(f"{c} ({why})" for c, why in r.missing.items()))
    return "; ".join(parts)


def first_line(text: str) -> str:
    """The reason's first line, without the ``cluster/app @rev:`` prefix statuses carry."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = _UNIT_PREFIX.sub("", line, count=1)
    return line if len(line) <= MESSAGE_CHARS else line[:MESSAGE_CHARS - 3] + "..."


def rollup_message(r: Rollup) -> Message:
    """The roll-up once settled or timed out; before that, the ``pending`` commit status."""
    clusters = {c: {"phase": p, "message": first_line(r.messages.get(c, ""))}
                for c, p in r.phases.items()}
    clusters.update({c: {"phase": "", "message": why} for c, why in r.missing.items()})
    if r.settled or r.timed_out:
        return Message(f"rollup:{r.app}:{r.revision}", "rollup", r.revision, rollup_text(r),
                       r.state, r.app, clusters=clusters, summary=rollup_summary(r))
    summary = f"rolling out, {len(r.phases)}/{r.total} settled"
    return Message(f"pending:{r.app}:{r.revision}", "pending", r.revision,
                   f"{short(r.revision)} {r.app}: {summary}", "pending", r.app,
                   clusters=clusters, summary=summary)


def fleet_rollup(route: str, revision: str, rollups: Sequence[Rollup]) -> Message | None:
    """One message over every application of a route at ``revision`` (a fleet-wide commit
    status); pending until each of them has settled or timed out."""
    if not rollups:
        return None
    done = all(r.settled or r.timed_out for r in rollups)
    ready = sum(r.ready for r in rollups)
    total = sum(r.total for r in rollups)
    bad = [f"{c}/{r.app} {p}" for r in rollups for c, p in r.phases.items() if p != Phase.READY.value]
    bad += [f"{c}/{r.app} not settled" for r in rollups if r.timed_out for c in r.missing]
    summary = f"{ready}/{total} Ready ({len(rollups)} applications)"
    if bad:
        summary += "; " + ", ".join(bad)
    text = f"{short(revision)}: {summary}"
    if not done:
        return Message(f"fleet-pending:{route}:{revision}", "pending", revision, text, "pending",
                       route=route, summary=summary)
    state = "success" if ready == total else "failure"
    return Message(f"fleet:{route}:{revision}", "rollup", revision, text, state, route=route,
                   summary=summary)


# -- a revision held back --------------------------------------------------------

def held(app: str, unit: UnitView) -> Message | None:
    """The announcement that a hold keeps ``unit.held_revision`` back, or None; its key is
    the unit and the revision, so it is sent once however many ticks it stays held."""
    if not unit.held_by or not unit.held_revision:
        return None
    name = f"{unit.cluster}/{app}"
    until = f" until {unit.held_until}" if unit.held_until else ""
    by = "on the cluster" if "/" in unit.held_by else f"by window {unit.held_by}"
    text = (f"{short(unit.held_revision)} {name} held {by}{until}; "
            f"stays at {short(unit.revision) or 'nothing'}")
    return Message(f"held:{name}:{unit.held_revision}", "held", unit.held_revision, text,
                   "pending", app, clusters={unit.cluster: {"phase": unit.phase,
                                                            "message": first_line(unit.message)}})


# -- changes into and out of Failed/Degraded ------------------------------------

@dataclass(frozen=True)
class Tracked:
    """What the notifier last reported of a unit, and a change it is waiting to confirm."""

    state: str                  # "ok" | "bad"
    phase: str = ""
    pending: str = ""           # the state seen but not yet held for ``debounce``
    since: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "phase": self.phase, "pending": self.pending,
                "since": self.since}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Tracked":
        return cls(str(raw.get("state", "ok")), str(raw.get("phase", "")),
                   str(raw.get("pending", "")), float(raw.get("since", 0.0)))


def state_of(phase: str) -> str | None:
    if phase in BAD:
        return "bad"
    return "ok" if phase in GOOD else None


def transition(app: str, unit: UnitView, tracked: Tracked | None, now: float,
               debounce: float) -> tuple[Message | None, Tracked | None]:
    """(message or None, what to remember) for one unit. A unit first seen healthy is
    remembered silently; one first seen Failed or Degraded is news, and reported."""
    state = state_of(unit.phase)
    if state is None:
        return None, tracked                         # transient: decides nothing
    if tracked is None:
        if state == "ok":
            return None, Tracked("ok", unit.phase)
        tracked = Tracked("ok")
    if state == tracked.state:
        return None, Tracked(state, unit.phase)      # and a flap back clears what was pending
    if tracked.pending != state:
        tracked = replace(tracked, pending=state, since=now)
    if now - tracked.since < debounce:
        return None, tracked
    return _change_message(app, unit, tracked), Tracked(state, unit.phase)


def _change_message(app: str, unit: UnitView, tracked: Tracked) -> Message:
    name = f"{unit.cluster}/{app}"
    stamp = unit.run_id or unit.revision
    clusters = {unit.cluster: {"phase": unit.phase, "message": first_line(unit.message)}}
    if tracked.pending == "bad":
        text = f"{short(unit.revision)} {name} {unit.phase}: {first_line(unit.message)}".rstrip(": ")
        return Message(f"failure:{name}:{stamp}", "failure", unit.revision, text, "failure", app,
                       clusters=clusters)
    was = f" (was {tracked.phase})" if tracked.phase else ""
    text = f"{short(unit.revision)} {name} {unit.phase} again{was}"
    return Message(f"recovery:{name}:{stamp}", "recovery", unit.revision, text, "success", app,
                   clusters=clusters)
