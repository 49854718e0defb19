"""The health follow-up of a run that ended ``Progressing``: re-read only the unhealthy objects.

A run whose objects are applied but not yet healthy ends ``Progressing`` and holds no lock and
no worker while the rollout proceeds (``workers/run/runner.py`` decides that and sends the first
``fleetsync.check_health``). Each follow-up reads only the objects that were unhealthy, and
settles the run's status ``Ready`` or ``Degraded`` (with a history entry), unless a newer run
wrote the status first; else it looks again a little later (2, 2, 3, 5, then every 10 s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from shared.state import keys
from shared import tasks_api
from shared.errors import FleetsyncError, PermanentError
from shared.logs import bind, get_logger
from shared.protocol import Phase, Trigger
from shared.state.status import HistoryEntry, now_iso
from workers.run import health, requests, runner, stages
from workers.context import Context
from workers.run.steps import Next, Send

log = get_logger("fleetsync.followup")


@dataclass(frozen=True)
class HealthCall:
    """One follow-up of a run that ended Progressing on health."""

    app: str
    cluster: str
    run_id: str
    revision: str
    deadline: float
    objects: tuple[str, ...]
    round: int = 0
    trigger: str = Trigger.BEAT.value
    task_id: str = ""

    @property
    def unit(self) -> str:
        return keys.unit_id(self.app, self.cluster)


def health_call_of(args: list[Any], kwargs: dict[str, Any], task_id: str = "") -> HealthCall:
    app, cluster, run_id = (list(args) + ["", "", ""])[:3]
    objects = kwargs.get("objects") or []
    return HealthCall(str(app), str(cluster), str(run_id), str(kwargs.get("revision") or ""),
                      float(kwargs.get("deadline") or 0),
                      tuple(str(o) for o in objects) if isinstance(objects, list) else (),
                      int(kwargs.get("round") or 0),
                      str(kwargs.get("trigger") or Trigger.BEAT.value), task_id)


def check_health(ctx: Context, hc: HealthCall) -> Next:
    """Re-check the unhealthy objects of run ``hc.run_id``; settle its status when they
    are healthy, one failed or the deadline passed, else look again a little later."""
    bind(app=hc.app, cluster=hc.cluster, run_id=hc.run_id, revision=hc.revision,
         stage="check_health")
    before = ctx.status.get_status(hc.app, hc.cluster)
    if before.run_id != hc.run_id or before.phase != Phase.PROGRESSING.value \
            or before.revision != hc.revision:
        return Next({"run_id": hc.run_id, "unit": hc.unit,
                     "summary": "nothing to do: a newer outcome was recorded"})
    try:
        unit = stages.resolve_unit(ctx, hc.app, hc.cluster)
        app = unit.app
        problems = stages.recheck_health(ctx, unit, list(hc.objects))
    except FleetsyncError as exc:
        if time.time() >= hc.deadline or isinstance(exc, PermanentError):
            return Next({"run_id": hc.run_id, "unit": hc.unit,
                         "summary": f"health not checked: {exc}; the next sync looks again"})
        return _next_check(ctx, hc, [*hc.objects], f"could not check health: {exc}")
    decided = health.decide(problems,
                            stages.message(before.counts or {}), wait=True,
                            timed_out=time.time() >= hc.deadline, timeout=app.timeout,
                            healthy=f"{stages.message(before.counts or {})}; healthy")
    if decided.phase == Phase.PROGRESSING:
        status = replace(before, message=decided.message, last_success_at="")
        if not ctx.runs.settle(hc.unit, hc.run_id, status):
            return Next({"run_id": hc.run_id, "unit": hc.unit,
                         "summary": "nothing to do: a newer outcome was recorded"})
        return _next_check(ctx, hc, list(decided.pending), status.message)
    phase, message, reason = decided.phase, decided.message, decided.reason
    status = replace(before, phase=phase.value, message=message, reason=reason,
                     health_deadline=0.0, last_success_at="")
    entry = HistoryEntry(revision=hc.revision, trigger="health", result=phase.value,
                         message=message, started_at=now_iso(), finished_at=now_iso(),
                         run_id=hc.run_id, task_id=hc.task_id, changes=before.counts or {},
                         requests=None, writes=None, lock_wait_s=None, drift={}, hooks=[],
                         **stages.commit_fields(ctx, hc.app, hc.revision))
    settled = ctx.runs.settle(hc.unit, hc.run_id, status, entry)
    log.info("health settled" if settled else "health outcome dropped: a newer one won",
             phase=phase.value, message=message)
    more = requests.rollout_next(ctx, hc.app) if settled and phase == Phase.READY else []
    return Next(tasks_api.unit_result(hc.app, hc.cluster, phase.value, message,
                                      run_id=hc.run_id, revision=hc.revision), tuple(more))


def _next_check(ctx: Context, hc: HealthCall, objects: list[str], message: str) -> Next:
    countdown = runner.health_poll(ctx, hc.round + 1)
    send = Send(tasks_api.CHECK_HEALTH, [hc.app, hc.cluster, hc.run_id],
                {"revision": hc.revision, "deadline": hc.deadline, "objects": objects,
                 "round": hc.round + 1, "trigger": hc.trigger}, countdown=countdown)
    return Next(tasks_api.unit_result(hc.app, hc.cluster, Phase.PROGRESSING.value,
                                      f"next look in {countdown:.0f} s: {message}",
                                      run_id=hc.run_id, revision=hc.revision), (send,))
