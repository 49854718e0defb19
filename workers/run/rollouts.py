"""Where a request obeys the operators' holds: suspensions and rollouts in waves.

``workers/run/runner.py`` asks here, for each unit it is asked to sync:

- ``suspension``: is the unit (or its application) suspended with ``fleetsync
  suspend``? Then nothing is fetched, rendered or applied; the unit shows
  ``Suspended`` with who and when.
- ``gate``: which revision may it apply? Without ``rollout:`` the source's
  newest; with it, the revision its wave allows (``shared/rollout.py``), or none
  yet on an application's very first rollout, when the unit waits for its wave.
  Clusters that the evaluation admits to the new revision (the next wave
  starting) are named, so that the runner requests them at once. A cluster whose
  unit a change window holds now is not admitted: its wave waits and starts at the
  first evaluation after the window opens.
- ``after_ready``: a unit just turned Ready; if its application rolls out in
  waves, evaluate again (that may start the next wave) and name what to request.

History shows the gates: each unit admitted to a new revision gets a ``Gate``
entry naming the wave and why it started, and a halt is written to the units
it holds back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from shared.logs import get_logger
from shared.protocol import Trigger
from shared.rollout import Decision
from shared.state.rollout_store import Holds, Suspension
from shared.spec.model import Application, Fleet
from shared.spec.rollout import fleet_waves
from shared.state.status import now_iso
from workers.run import stages, windows
from workers.context import Context

log = get_logger("fleetsync.rollouts")
REVERT_PREFIX = 'Revert "'


@dataclass(frozen=True)
class Gate:
    revision: str                    # what the unit may apply ("": nothing yet)
    waiting: str = ""                # why not, when revision is ""
    started: tuple[str, ...] = ()    # clusters just admitted to the new revision
    pause_ends: float = 0.0          # a wave just began its pause, until then


def suspension(ctx: Context, app: str, cluster: str) -> Suspension | None:
    return Holds(ctx.redis).suspension(app, cluster)


def gate(ctx: Context, fleet: Fleet, app: Application, cluster: str, head: str) -> Gate:
    if app.rollout is None or not head:
        return Gate(head)
    plans = fleet_waves(fleet, app)
    decision = Holds(ctx.redis).evaluate(
        app.name, plans, head, revert=app.rollout.urgent_on_revert and is_revert(ctx, app, head),
        urgent_on_revert=app.rollout.urgent_on_revert, held=_window_holds(fleet, app))
    _record(ctx, app, decision)
    revision = decision.allowed.get(cluster, head)
    waiting = ""
    if not revision:
        wave = next((i for i, p in enumerate(plans) if cluster in p.clusters), 0)
        waiting = (f"waiting for wave {wave + 1} of {len(plans)}: first rollout of "
                   f"{decision.record.target[:12]} is at wave "
                   f"{min(decision.record.wave, len(plans) - 1) + 1}; nothing applied here yet")
        if decision.record.halted or decision.record.paused:
            waiting += f" ({decision.record.halted or 'paused ' + decision.record.paused})"
    return Gate(revision, waiting, decision.started, decision.pause_ends)


def _window_holds(fleet: Fleet, app: Application) -> Callable[[str], bool]:
    """Whether a change window holds ``app`` on a cluster now: asked only of the clusters
    a wave is about to admit, so a wave does not start inside a closed window and starts
    at the first evaluation after it opens (a tick, or a unit of the rollout turning
    Ready)."""
    def held(cluster: str) -> bool:
        found = fleet.clusters.get(cluster)
        return found is not None and not windows.decision(fleet, app, found).allowed
    return held


def allowed_now(ctx: Context, app: Application, cluster: str, head: str) -> str:
    """What ``cluster`` may apply, from the record alone (no status read, no write): the
    apply stage's check that its render is still the one wanted."""
    if app.rollout is None:
        return head
    from shared.rollout import allowed

    record = Holds(ctx.redis).record(app.name)
    return allowed(record, cluster) if record.target else head


def is_revert(ctx: Context, app: Application, revision: str) -> bool:
    """A revert, for ``urgentOnRevert``: its commit's subject is git's (and the forges')
    ``Revert "..."`` (what ``git revert`` and the forges' revert buttons write). Read from the commit fields the fetch recorded: no git call."""
    subject = stages.commit_fields(ctx, app.name, revision).get("subject", "")
    return subject.startswith(REVERT_PREFIX)


def _record(ctx: Context, app: Application, decision: Decision) -> None:
    """Gates in the units' history: who was admitted, and a halt on those it holds back."""
    if not decision.events:
        return
    why = "; ".join(e["message"] for e in decision.events)
    record = decision.record
    for cluster in decision.started:
        _entry(ctx, app.name, cluster, record.target, "Gate", f"admitted to "
               f"{record.target[:12]}: {why}")
    if record.halted:
        for cluster, revision in decision.allowed.items():
            if revision != record.target:
                _entry(ctx, app.name, cluster, revision or record.target, "Halted",
                       f"held at {revision[:12] or 'nothing'}: {record.halted}")
    log.info("rollout moved", app=app.name, events=why, started=list(decision.started))


def _entry(ctx: Context, app: str, cluster: str, revision: str, result: str,
           message: str) -> None:
    stamp = now_iso(time.time())
    ctx.status.add_history(app, cluster, {
        "revision": revision, "trigger": Trigger.ROLLOUT.value, "result": result,
        "message": message, "started_at": stamp, "finished_at": stamp, "run_id": "",
        "task_id": "", "changes": {}})
