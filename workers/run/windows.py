"""Where a run obeys the change windows (``windows:`` in the fleet spec).

``shared/spec/window_rules.py`` decides, purely, whether a unit may change at an
instant; this module asks it at the instant ``shared/clock.now()`` gives, and says
what the run does about it:

- ``hold``: the unit is held now (a deny window is open, or it is outside every allow
  window that selects it), unless a manual sync let ``head`` through
  (``shared/state/overrides.py``). A held unit keeps the revision it has: the
  request and the apply stage run it at that revision (health evaluated, drift
  detected; corrected only when the holding windows say ``drift: correct``), and
  ``head`` waits. A unit that never applied anything applies nothing.
- ``Hold.message``: ``held by window friday-freeze until Mon 06:00 Europe/Berlin;
  new revision waiting: abc1234``, appended to the unit's status message, with
  ``held_by``, ``held_until`` and ``held_revision`` in its status record.
- ``let_through``: a manual sync with a reason, when every holding window says
  ``manualSync: true``: the grant, the unit's history entry (who, why) and one
  ``event: audit`` log line.

When the window opens, the unit is no longer held and its next run (the next tick
of its cluster, within one interval) applies ``head``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from shared import audit, clock
from shared.audit import clean
from shared.errors import FleetsyncError
from shared.logs import get_logger
from shared.spec.model import Application, Cluster, Fleet
from shared.spec.window_rules import Decision, decide, next_change
from shared.state.overrides import MAX_BY, MAX_REASON, Override, Overrides
from shared.state.redisconn import RedisError
from shared.state.runs import Outcome
from shared.state.status import UnitStatus, now_iso
from workers.context import Context
from workers.run.cluster_hold import HELD_BY, ClusterHold

log = get_logger("fleetsync.windows")
SHORT = 7


@dataclass(frozen=True)
class Hold:
    """A unit held by a window now: which, until when, what may pass, what waits."""

    decision: Decision
    waiting: str = ""               # the source's newer revision that waits ("": none)
    note: str = ""                  # held on the cluster: what its ConfigMap says
    count: int = 0                  # new revisions between what it has and ``waiting``
                                    # (0: not counted here)

    @property
    def window(self) -> str:
        return self.decision.window or ""

    @property
    def until(self) -> str:
        """When it is next allowed, ISO 8601 UTC ("" when not within the horizon)."""
        until = self.decision.until
        return until.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if until else ""

    @property
    def drift_corrected(self) -> bool:
        return self.decision.drift_corrected

    @property
    def manual_sync(self) -> bool:
        return self.decision.manual_sync

    def message(self) -> str:
        text = self.note or self.decision.message()
        if not self.waiting:
            return text
        count = f"{self.count} new revision{'s' if self.count > 1 else ''}" if self.count \
            else "new revision"
        return f"{text}; {count} waiting: {self.waiting[:SHORT]}"

    def tell(self, outcome: Outcome, suffix: bool = True) -> Outcome:
        """``outcome`` with this hold in its status fields (and its message, ``suffix``)."""
        summary = f"{outcome.summary}; {self.message()}" if suffix else outcome.summary
        return replace(outcome, summary=summary, held_by=self.window, held_until=self.until,
                       held_revision=self.waiting)

    def told_in(self, status: UnitStatus) -> bool:
        """The status says this hold already (a tick needs no run to tell it)."""
        return status.held_by == self.window and status.held_revision == self.waiting \
            and status.held_until == self.until


_DECIDED: "OrderedDict[tuple[int, str, str], tuple[object, Decision, datetime, datetime]]" = \
    OrderedDict()
DECIDED_KEPT = 4096


def decision(fleet: Fleet, app: Application, cluster: Cluster,
             now: datetime | None = None) -> Decision:
    """The windows' decision for the unit at ``now`` (default ``clock.now()``). A decision
    holds until the next time a window selecting the unit opens or closes, so it is kept
    per process for the spec's windows and the unit until then (a decision with allow
    windows walks their schedules: milliseconds, at every tick of every unit)."""
    if not fleet.windows:
        return Decision(True)
    now = now or clock.now()
    key = (id(fleet.windows), app.name, cluster.name)
    hit = _DECIDED.get(key)
    if hit is not None and hit[0] is fleet.windows and hit[2] <= now < hit[3]:
        return hit[1]
    decided = decide(fleet.windows, app.name, cluster, now)
    change = next_change(fleet.windows, app.name, cluster, now) or now
    _DECIDED[key] = (fleet.windows, decided, now, change)
    _DECIDED.move_to_end(key)
    while len(_DECIDED) > DECIDED_KEPT:
        _DECIDED.popitem(last=False)
    return decided


def hold(ctx: Context, fleet: Fleet, app: Application, cluster: Cluster, head: str,
         applied: str, decided: Decision | None = None,
         on_cluster: ClusterHold | None = None) -> Hold | None:
    """The window hold of the unit now (``decided``: the decision, when made already),
    or None when it may change. ``head`` is the revision it would sync to, ``applied``
    the one it has; a manual sync granted for ``head`` lets it through. A hold put on
    the cluster (``on_cluster``) comes first: no manual sync passes it, drift is only
    reported."""
    waiting = head if head and head != applied else ""
    if on_cluster is not None:
        until = datetime.fromisoformat(on_cluster.until.replace("Z", "+00:00")) \
            if on_cluster.until else None
        return Hold(Decision(False, HELD_BY, until, manual_sync=False, drift_corrected=False),
                    waiting, on_cluster.message(), count(ctx, fleet, app, applied, waiting))
    decided = decided or decision(fleet, app, cluster)
    if decided.allowed:
        return None
    if head and granted(ctx, app.name, cluster.name, head):
        return None
    return Hold(decided, waiting, count=count(ctx, fleet, app, applied, waiting))


_COUNTED: "OrderedDict[tuple[str, str, str], int]" = OrderedDict()
COUNTED_KEPT = 1024


def count(ctx: Context, fleet: Fleet, app: Application, applied: str, head: str) -> int:
    """The new revisions between ``applied`` and ``head``, when this host's mirror of the
    source can tell (once per pair and process), else 0."""
    source = fleet.sources.get(app.source)
    if not applied or not head or source is None or source.helm_repository:
        return 0
    key = (source.name, applied, head)
    if key not in _COUNTED:
        try:
            if not ctx.sources.mirror_path(source).is_dir():
                return 0
            _COUNTED[key] = ctx.sources.revisions_between(source, applied, head)
        except (FleetsyncError, OSError, ValueError) as exc:
            log.debug("new revisions not counted", source=source.name, error=str(exc))
            return 0
        while len(_COUNTED) > COUNTED_KEPT:
            _COUNTED.popitem(last=False)
    return _COUNTED[key]


def granted(ctx: Context, app: str, cluster: str, revision: str) -> bool:
    try:
        grant = Overrides(ctx.redis).granted(app, cluster)
    except RedisError as exc:         # a pull worker's user may not read it: held
        log.info("window override not readable; the unit stays held", error=str(exc))
        return False
    return grant is not None and grant.revision == revision


def applied_revision(status: UnitStatus) -> str:
    """The revision the unit's last applying run applied ("" when none)."""
    return status.applied_key.partition(":")[0] or ""


def refusal(held: Hold, reason: str) -> str:
    """Why a manual sync may not pass ``held`` ("" when it may, with ``reason``)."""
    if held.window == HELD_BY:
        return f"{held.message()}; no manual sync passes a hold put on the cluster"
    if not held.manual_sync:
        return (f"{held.message()}, which allows no manual sync (manualSync: false); "
                "wait for it to open or change the window in the fleet spec")
    if not reason:
        return (f"{held.message()}: a manual sync through it needs a reason "
                "(fleetsync sync APP --reason TEXT)")
    return ""


def let_through(ctx: Context, app: str, cluster: str, held: Hold, head: str, trigger: str,
                by: str, reason: str) -> None:
    """Grant a manual sync of ``head`` through ``held``: recorded in the unit's history
    and as one audit line (``by`` and ``reason`` cut and cleaned first)."""
    by, reason = clean(by, MAX_BY) or "unknown", clean(reason, MAX_REASON)
    stamp = now_iso()
    Overrides(ctx.redis).grant(app, cluster, Override(head, by, reason, held.window, stamp))
    ctx.status.add_history(app, cluster, {
        "revision": head, "trigger": trigger, "result": "Override",
        "message": f"manual sync through window {held.window} by {by}: {reason}",
        "started_at": stamp, "finished_at": stamp, "run_id": "", "task_id": "",
        "changes": {}, "by": by, "reason": reason})
    audit.record(who=by, what="window override", units=[f"{cluster}/{app}"], why=reason,
                 app=app, cluster=cluster, window=held.window, revision=head, via=trigger)
