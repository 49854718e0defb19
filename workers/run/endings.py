"""Every way out of a stage: the run ends (``finish``) or is queued again (``wait``).

Each stage of ``workers/run/runner.py`` and ``workers/run/requests.py`` leaves
through one of these, which is what keeps the protocol's promise: every run
ends with an outcome (its status, its history entry, its run record), and its
marker is always cleared. ``crashed`` ends a run that a bug interrupted
(with the lock, when the apply stage holds it, and sending the run parked behind);
``drop`` one whose unit the spec no longer has; ``resend`` sends the next stage
of a run that was parked behind another.

What an ending needs of the spec (the unit's interval, its onRemoval, its spec
hash, its source's commit) comes from one resolved ``stages.Unit``, passed in by
the stage that holds it, or resolved here once.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from shared import metrics, tasks_api
from shared.errors import FleetsyncError, TransientError
from shared.logs import get_logger
from shared.protocol import Phase, Trigger, Verdict, backoff
from shared.state import keys
from shared.state.runs import Outcome
from shared.state.status import HistoryEntry, UnitStatus, now_iso
from workers.context import Context
from workers.run import stages
from workers.run.stages import Unit
from workers.run.steps import Call, Next, Send, apply_send, render_send

log = get_logger("fleetsync.runner")

MAX_ATTEMPTS = 10                   # transient failures of one run before it gives up
APPLIED = (Phase.READY, Phase.PROGRESSING, Phase.DEGRADED)   # the run reached the cluster


def transient(ctx: Context, call: Call, owner: str, exc: TransientError, started: float,
              unit: Unit | None = None) -> Next:
    metrics.task_failures.labels("apply" if owner else "render", exc.reason).inc()
    if call.attempt + 1 >= MAX_ATTEMPTS:
        return finish(ctx, call, owner, Outcome(
            Phase.FAILED, f"gave up after {MAX_ATTEMPTS} attempts: {exc}", call.revision,
            reason=exc.reason), started, unit)
    countdown = exc.delay if exc.delay else backoff(call.attempt, cap=300.0)
    return wait(ctx, call, owner, str(exc), countdown, bounded=True, unit=unit)


def wait(ctx: Context, call: Call, owner: str, message: str, countdown: float, *,
         bounded: bool, unit: Unit | None = None) -> Next:
    """The run is queued again, to go on after ``countdown`` (still the unit's one run)."""
    interval, _ = _spec_of(unit or _unit(ctx, call))
    status = UnitStatus(call.app, call.cluster, phase=Phase.PROGRESSING.value,
                        revision=call.revision, message=message, last_synced_at=now_iso(),
                        reason="Waiting", run_id=call.run_id, interval=interval)
    tries = call.tries + 1
    step = ctx.runs.retry(call.unit, call.run_id, owner, countdown=countdown, tries=tries,
                          status=status)
    if step.verdict != Verdict.RETRY:
        return Next(dropped(call, step.verdict, step.other),
                    tuple(resend(ctx, call.unit, step.send)))
    log.info("run waits", message=message, countdown=round(countdown, 1))
    attempt = call.attempt + 1 if bounded else call.attempt
    return Next(tasks_api.unit_result(call.app, call.cluster, Phase.PROGRESSING.value,
                                      f"next try in {countdown:.0f} s: {message}",
                                      run_id=call.run_id, revision=call.revision),
                retry_in=countdown, retry_kwargs={**call.stage_kwargs(), "attempt": attempt,
                                                  "owner": "", "tries": tries})


def finish(ctx: Context, call: Call, owner: str, outcome: Outcome, started: float,
           unit: Unit | None = None) -> Next:
    """The run is over: its outcome goes to the run record, the status and history."""
    unit = unit or _unit(ctx, call)
    finished = time.time()
    summary = outcome.result or {}
    applied = outcome.phase in APPLIED
    interval, on_removal = _spec_of(unit)
    status = UnitStatus(call.app, call.cluster, phase=outcome.phase.value,
                        revision=call.revision, message=outcome.summary,
                        last_synced_at=now_iso(finished), reason=outcome.reason,
                        counts=summary.get("counts"), failed_key=outcome.failed_key,
                        run_id=call.run_id, health_deadline=outcome.health_deadline,
                        last_success_at=now_iso(finished) if applied else "",
                        interval=interval, on_removal=on_removal,
                        applied_key=unit.spec_key(call.revision) if applied and unit else "",
                        held_by=outcome.held_by, held_until=outcome.held_until,
                        held_revision=outcome.held_revision)
    entry = HistoryEntry(revision=call.revision, trigger=call.trigger,
                         result=outcome.phase.value, message=outcome.summary,
                         started_at=now_iso(started), finished_at=now_iso(finished),
                         run_id=call.run_id, task_id=call.task_id,
                         changes=summary.get("counts", {}), requests=summary.get("requests"),
                         writes=summary.get("writes"),
                         lock_wait_s=round(started - call.requested_at, 3)
                         if call.requested_at else None,
                         drift=summary.get("corrected_drift") or {},
                         hooks=list(summary.get("hooks") or []), **_commit(ctx, call, unit))
    step = ctx.runs.end(call.unit, call.run_id, owner, outcome, status=status, entry=entry)
    result = tasks_api.unit_result(call.app, call.cluster, outcome.phase.value, outcome.summary,
                                   run_id=call.run_id, revision=call.revision, details=summary)
    error = outcome.error if outcome.phase in (Phase.FAILED, Phase.DRIFTED) else None
    return Next(result, tuple(resend(ctx, call.unit, step.send)), error=error)


def _unit(ctx: Context, call: Call) -> Unit | None:
    """The unit from the spec, or None: an outcome is recorded even without a readable
    spec, or for a unit it no longer has."""
    try:
        return stages.unit_in_spec(ctx, call.app, call.cluster)
    except FleetsyncError:
        return None


def _spec_of(unit: Unit | None) -> tuple[float, str]:
    """What status keeps from the spec: the unit's reconcile interval (staleness) and its
    application's onRemoval (for when it leaves the spec); 0 and "" when it cannot tell."""
    return (unit.cluster.interval, unit.app.on_removal) if unit else (0.0, "")


def _commit(ctx: Context, call: Call, unit: Unit | None) -> dict[str, str]:
    if unit is None:
        return {}
    return stages.commit_fields(ctx, call.app, call.revision, unit.fleet)


def failed(exc: FleetsyncError, failed_key: str) -> Outcome:
    return Outcome(Phase.FAILED, str(exc), reason=exc.reason, failed_key=failed_key, error=exc)


def crashed(ctx: Context, call: Call, exc: BaseException, owner: str = "") -> Next:
    """A bug or an unexpected error: end the run so that nothing waits on it forever,
    releasing ``owner``'s lock when the stage holds it; the ``Next`` sends the parked run
    and raises ``exc``. A run that ended already keeps its outcome (the ending is
    written once: the crash came after it)."""
    why = (f"gave up: {exc}" if isinstance(exc, FleetsyncError)
           else f"internal error: {type(exc).__name__}: {exc}")
    try:
        nxt = finish(ctx, call, owner, Outcome(Phase.FAILED, why, call.revision,
                                               reason=getattr(exc, "reason", "InternalError")),
                     time.time())
    except FleetsyncError:
        log.exception("could not record the end of a crashed run")
        return Next({"run_id": call.run_id, "unit": call.unit, "summary": why}, error=exc)
    return replace(nxt, error=exc)


def drop(ctx: Context, call: Call) -> Next:
    """A task for a unit the current spec no longer has (or a spec it came from)."""
    log.debug("dropped: unit not in the current fleet spec", unit=call.unit)
    ctx.runs.end(call.unit, call.run_id, "", Outcome(Phase.REMOVED, "not in the fleet spec"),
                 status=None, entry=None)
    return Next({"run_id": call.run_id, "unit": call.unit, "dropped": "not in the fleet spec"})


def dropped(call: Call, verdict: Verdict, other: str) -> dict[str, Any]:
    why = {Verdict.BUSY: "parked: it runs when the current sync of the unit ends",
           Verdict.SUPERSEDED: f"superseded by run {other}",
           Verdict.DUPLICATE: "a second delivery of a run that began already"}
    return {"run_id": call.run_id, "unit": call.unit, "verdict": verdict.value,
            "summary": why.get(verdict, verdict.value)}


def resend(ctx: Context, unit: str, run_id: str) -> list[Send]:
    """Send a parked (or revived) run of ``unit``'s next stage, from its run record."""
    if not run_id:
        return []
    record = ctx.runs.run(unit, run_id)
    if not record.get("unit"):
        return []
    app, cluster = keys.split_unit(record["unit"])
    call = Call(app, cluster, run_id, record.get("trigger", Trigger.COALESCED.value),
                float(record.get("requested_at") or 0), record.get("revision", ""),
                record.get("render_key", ""), tries=int(record.get("tries") or 0))
    return [apply_send(call) if call.render_key else render_send(call)]
