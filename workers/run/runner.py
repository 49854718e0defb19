"""One run of a sync unit, stage by stage, through the protocol.

    request ──> render ──> apply ──> end (outcome: status, history, run record)
                  │          │          └──> check_health, while Progressing on health
                  └──────────┴──> retry (queued again) / superseded / parked

Each function here is one stage of a run: it asks ``ctx.runs`` (the protocol)
whether the run may go on, calls one domain function of ``workers/run/stages.py``,
and returns a ``Next``: the run's small result, the tasks to send, and whether
to retry this task after a countdown. It never calls Celery: ``workers/tasks.py``
carries out the ``Next``. So the whole lifecycle of a run reads in this file,
and every way out of a stage goes through ``_finish`` (the run is over) or
``_wait`` (the run is queued again), which is what keeps the protocol's
promise: every run ends with an outcome, and its marker is always cleared.

Around it: ``workers/run/steps.py`` (the values a stage takes and gives),
``workers/run/fencing.py``
(no write with a stale lock), ``workers/run/followup.py`` (the health follow-up) and
``workers/run/removing.py`` (an application that left the spec).

Stages never re-enter each other under the lock: apply with a missing render
goes back to the render stage (releasing the lock), it does not render itself.

Health counts in the phase (unless the application sets ``wait: false``): a run
whose objects are applied but not all healthy ends ``Progressing`` (or
``Degraded`` when an object failed, or its health deadline, ``timeout`` after it
first became unhealthy at this revision, has passed). It holds no lock and no
worker while the rollout proceeds: ``check_health`` follow-ups re-read only the
unhealthy objects, a few seconds apart, and settle the run's status ``Ready`` or
``Degraded``, unless a newer run wrote the status first.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from typing import Any

from shared.state import keys
from shared import metrics, tasks_api
from shared.errors import FleetsyncError, PermanentError, TransientError
from shared.logs import bind, get_logger
from shared.state.redisconn import RedisError
from shared.protocol import Phase, Trigger, Verdict, backoff
from shared.state.runs import Begun, Outcome
from shared.spec.model import Application, Cluster
from shared.state.status import HistoryEntry, UnitStatus, now_iso
from workers.run import health, rollouts, stages
from workers.context import Context
from workers.run.fencing import RunFence, apply_fenced
from workers.run.steps import Call, Next, Send

log = get_logger("fleetsync.runner")

MAX_ATTEMPTS = 10                   # transient failures of one run before it gives up
DEPENDENCY_POLL = 3.0               # seconds between looks at a dependency's phase
MAX_DEPENDENCY_WAIT = 900.0
PROBE_TTL = 30.0
APPLIED = (Phase.READY, Phase.PROGRESSING, Phase.DEGRADED)   # the run reached the cluster


# --- request ----------------------------------------------------------------------

def request(ctx: Context, app_name: str, cluster_name: str, trigger: str,
            fresh: bool = False, revisions: dict[str, str] | None = None
            ) -> tuple[dict[str, Any], list[Send]]:
    """A sync of one unit is asked for: join the queued run, or queue one.

    ``revisions`` carries the sources' revisions already looked up by the caller
    (one look-up per source per reconcile, not one per unit)."""
    fleet = ctx.fleet()
    app, cluster = stages.resolve(fleet, app_name, cluster_name)
    now = time.time()
    held = rollouts.suspension(ctx, app_name, cluster_name)
    if held is not None:            # not fetched, not rendered: only its status is told
        before = ctx.status.get_status(app_name, cluster_name).revision
        return _not_run(ctx, Call(app_name, cluster_name, "", trigger, now, before),
                        Outcome(Phase.SUSPENDED, held.message(), before, reason="Suspended")), []
    try:
        revision = revision_for(ctx, app.source, fresh, revisions)
    except PermanentError as exc:
        step = ctx.runs.request(app_name, cluster_name, trigger=trigger, requested_at=now)
        if step.verdict == Verdict.QUEUED:
            _finish(ctx, Call(app_name, cluster_name, step.other, trigger, now), "",
                    _failed(exc, ""), started=now)
        return tasks_api.request_result(app_name, cluster_name, step.other, joined=True,
                                        error=str(exc)), []
    head, gate = revision, rollouts.gate(ctx, fleet, app, cluster_name, revision)
    admitted = _admitted(ctx, app, gate, head, but=cluster_name)
    revision = gate.revision
    if not revision:                # the first rollout has not reached this unit's wave
        return _not_run(ctx, Call(app_name, cluster_name, "", trigger, now, ""), Outcome(
            Phase.PROGRESSING, gate.waiting, "", reason="WaitingForWave")), admitted
    spec_hash = stages.unit_spec_hash(fleet, app, cluster)
    step, render_key = ctx.runs.request_reading(
        app_name, cluster_name, trigger=trigger, revision=revision, requested_at=now,
        failed_key=f"{revision}:{spec_hash}" if trigger == Trigger.BEAT else "",
        memo=stages.memo_key(app, cluster, revision, spec_hash))
    if step.verdict == Verdict.SKIPPED:
        return tasks_api.request_result(app_name, cluster_name, "", joined=False,
                                        revision=revision,
                                        error="failed permanently at this revision and spec"), []
    call = Call(app_name, cluster_name, step.other, trigger, now, revision)
    sends: list[Send] = []
    if step.verdict == Verdict.QUEUED:
        if app.suspend:
            _finish(ctx, call, "", Outcome(Phase.SUSPENDED, "suspended in the fleet spec",
                                           revision), started=now)
        elif render_key:     # rendered at this revision and spec already: straight to apply
            sends.append(_apply_send(replace(call, render_key=render_key)))
        else:
            sends.append(_render_send(call))
    elif step.verdict == Verdict.REVIVE:
        sends += _resend(ctx, step.other)
    return tasks_api.request_result(app_name, cluster_name, step.other,
                                    joined=step.verdict != Verdict.QUEUED,
                                    revision=revision), sends + admitted


def _not_run(ctx: Context, call: Call, outcome: Outcome) -> dict[str, Any]:
    """A unit held (suspended, or waiting for its wave): nothing is fetched or rendered.
    The hold is told once through a run of its own (status, history, the requester);
    a beat tick that finds it told already only refreshes the status's time."""
    before = ctx.status.get_status(call.app, call.cluster)
    if call.trigger == Trigger.BEAT and before.phase == outcome.phase.value \
            and before.message == outcome.summary:
        ctx.status.set_status(replace(before, last_synced_at=now_iso()))
        return tasks_api.request_result(call.app, call.cluster, "", joined=False,
                                        revision=before.revision, error=outcome.summary)
    step = ctx.runs.request(call.app, call.cluster, trigger=call.trigger,
                            revision=call.revision, requested_at=call.requested_at)
    if step.verdict == Verdict.QUEUED:
        _finish(ctx, replace(call, run_id=step.other), "", outcome, started=call.requested_at)
    return tasks_api.request_result(call.app, call.cluster, step.other,
                                    joined=step.verdict != Verdict.QUEUED,
                                    revision=call.revision)


def _admitted(ctx: Context, app: Application, gate: rollouts.Gate, head: str,
              but: str = "") -> list[Send]:
    """Request the units a rollout just admitted to ``head`` (a wave started) now, not at
    their next tick; and, when a wave just began its pause, a sync of the application
    once it ends."""
    sends: list[Send] = []
    for cluster in gate.started:
        if cluster != but:
            sends += request(ctx, app.name, cluster, Trigger.ROLLOUT.value,
                             revisions={app.source: head})[1]
    if gate.pause_ends:
        sends.append(Send(tasks_api.SYNC, [app.name, None], {"trigger": Trigger.ROLLOUT.value},
                          countdown=max(0.0, gate.pause_ends - time.time()) + 0.5))
    return sends


def rollout_next(ctx: Context, app_name: str) -> list[Send]:
    """A unit turned Ready: in a rollout in waves, the next wave may start now. Best
    effort: a pull worker may not read other clusters' status (its Redis user), and then
    the next beat tick of any of the application's clusters starts it."""
    try:
        fleet = ctx.fleet()
        app = fleet.applications.get(app_name)
        if app is None or app.rollout is None:
            return []
        head = stages.recorded_source(ctx, app.source)[0]
        return _admitted(ctx, app, rollouts.gate(ctx, fleet, app, "", head), head)
    except (FleetsyncError, RedisError) as exc:
        log.info("rollout not evaluated after Ready; the next tick does", error=str(exc))
        return []


def revision_for(ctx: Context, source: str, fresh: bool, known: dict[str, str] | None) -> str:
    """The revision a request syncs ``source``'s units to (``known``: looked up already
    this pass), fetched first with ``fresh``; the last good one when a fetch is refused."""
    if known is not None and source in known:
        return known[source]
    try:
        revision = stages.fetch(ctx, source) if fresh else stages.current_revision(ctx, source)
    except PermanentError:
        revision = stages.recorded_source(ctx, source)[0]
        if not revision:         # never fetched: nothing to stay at
            raise
        log.warning("source fetch refused; its last good revision stays", source=source,
                    revision=revision)
    if known is not None:
        known[source] = revision
    return revision


# --- render -------------------------------------------------------------------------

def render(ctx: Context, call: Call) -> Next:
    bind(app=call.app, cluster=call.cluster, run_id=call.run_id, stage="render")
    if not _in_spec(ctx, call):
        return _drop(ctx, call)
    step, revision = ctx.runs.touch(call.unit, call.run_id)
    if step.verdict != Verdict.GO:
        return Next(_dropped(call, step.verdict, step.other))
    call = replace(call, revision=revision or call.revision)
    started = time.time()
    held = rollouts.suspension(ctx, call.app, call.cluster)
    if held is not None:             # suspended while it was queued: not rendered
        before = ctx.status.get_status(call.app, call.cluster).revision
        return _finish(ctx, replace(call, revision=before), "", Outcome(
            Phase.SUSPENDED, held.message(), before, reason="Suspended"), started)
    try:
        rendered = stages.render(ctx, call.app, call.cluster, call.revision)
    except PermanentError as exc:
        return _finish(ctx, call, "", _failed(exc, _spec_key(ctx, call)), started=started)
    except TransientError as exc:
        return _transient(ctx, call, "", exc, started)
    return Next({"summary": f"rendered {len(rendered.objects)} object(s)"
                            + (" (cached)" if rendered.cache_hit else "") + "; apply next",
                 "unit": call.unit, "revision": call.revision, "run_id": call.run_id,
                 "objects": len(rendered.objects), "cache_hit": rendered.cache_hit,
                 "warnings": list(rendered.warnings[:10])},
                (_apply_send(replace(call, render_key=rendered.key)),))


# --- apply ---------------------------------------------------------------------------

def apply(ctx: Context, call: Call) -> Next:
    bind(app=call.app, cluster=call.cluster, run_id=call.run_id, revision=call.revision,
         stage="apply")
    if not _in_spec(ctx, call):
        return _drop(ctx, call)
    fleet = ctx.fleet()
    app, cluster = stages.resolve(fleet, call.app, call.cluster)
    waiting = stages.waiting_for(ctx, fleet, app, cluster)
    if waiting:
        return _wait_for_dependencies(ctx, call, waiting)
    owner = uuid.uuid4().hex
    begun = ctx.runs.begin(call.unit, call.run_id, owner, cluster.name,
                           park={"render_key": call.render_key, "revision": call.revision},
                           taking_over=call.owner)
    verdict = begun.step.verdict
    if verdict != Verdict.STARTED:
        return Next(_dropped(call, verdict, begun.step.other))
    try:
        return _apply_started(ctx, call, app, cluster, begun, owner)
    except (TransientError, RedisError) as exc:
        if call.attempt + 1 >= MAX_ATTEMPTS:
            raise
        # Redis failed under this attempt (a restart, a failover): the lock could not be
        # released, so the retry carries its owner and takes the lock over at once
        log.warning("apply retried after a Redis failure", error=str(exc))
        countdown = backoff(call.attempt, cap=30.0)
        return Next({"run_id": call.run_id, "unit": call.unit,
                     "summary": f"retrying in {countdown:.0f} s: {exc}"}, retry_in=countdown,
                    retry_kwargs={**call.stage_kwargs(), "attempt": call.attempt + 1,
                                  "owner": owner})


def _apply_started(ctx: Context, call: Call, app: Application, cluster: Cluster,
                   begun: Begun, owner: str) -> Next:
    """The apply stage once the run holds the lock: every way out releases it."""
    started = time.time()
    if call.requested_at:
        metrics.lock_wait.observe(max(0.0, started - call.requested_at))
    if begun.revision and begun.revision != call.revision:     # a newer request joined it
        return _back_to_render(ctx, replace(call, revision=begun.revision), owner, moved=True)
    probing = False
    if begun.cluster_next_try:
        down = ctx.clusters.down(cluster.name)
        if down and (time.time() < down.next_at
                     or not ctx.clusters.claim_probe(cluster.name, PROBE_TTL)):
            return _wait(ctx, call, owner, down.message(),
                         max(1.0, down.next_at - time.time()) + 0.5, bounded=False)
        probing = down is not None
    entry = ctx.cache.get_entry(call.render_key) if call.render_key else None
    if entry is None:                # expired, flushed, or refused as tampered: render again
        return _back_to_render(ctx, call, owner)
    objects, meta = entry
    head, source_error = stages.recorded_source(ctx, app.source)     # one read for both
    refused = _refuse_render(ctx, call, app, cluster, meta, head)
    if refused is not None:
        return _back_to_render(ctx, replace(call, revision=refused), owner, moved=True)
    lost = threading.Event()
    with ctx.runs.renewing(call.unit, owner, on_lost=lost.set) as lease:
        try:
            result = apply_fenced(ctx, call, app, cluster, objects,
                                   RunFence(ctx, call.unit, owner, begun.token, lease, lost))
        except PermanentError as exc:
            if exc.drifted:          # retried every tick: what refused may let go
                return _finish(ctx, call, owner, Outcome(
                    Phase.DRIFTED, f"drifted from Git and not corrected "
                                   f"({', '.join(exc.drifted[:3])}): {exc}", call.revision,
                    reason=exc.reason, error=exc), started)
            return _finish(ctx, call, owner, _failed(exc, _spec_key(ctx, call)), started)
        except TransientError as exc:
            if _unreachable(exc):
                down = ctx.clusters.mark_down(cluster.name, ctx.kube(cluster).server,
                                              _unreachable(exc))
                return _wait(ctx, call, owner, down.message(),
                             max(1.0, down.next_at - time.time()) + 0.5, bounded=False)
            return _transient(ctx, call, owner, exc, started)
    if probing:
        ctx.clusters.mark_up(cluster.name)
    summary = result.to_dict()
    metrics.record_apply(summary.get("counts", {}), summary.get("drift_corrections", 0))
    message = stages.message(summary.get("counts", {}))
    if summary.get("corrected_drift"):
        message = f"corrected drift: {_drift_line(summary['corrected_drift'])} ({message})"
    if source_error:              # the last good revision stays applied: say why
        message += f"; source {app.source} stays at {call.revision[:12]}: {source_error}"
    outcome, follow_up = _health_outcome(ctx, call, app, result, message)
    nxt = _finish(ctx, call, owner, replace(outcome, result=summary), started)
    return replace(nxt, send=nxt.send + follow_up)


# --- health ------------------------------------------------------------------------------

HEALTH_POLL = (2.0, 2.0, 3.0, 5.0, 10.0)    # seconds before each follow-up, by round


def _health_outcome(ctx: Context, call: Call, app: Application, result: Any,
                    message: str) -> tuple[Outcome, tuple[Send, ...]]:
    """The phase an applied run ends in, from its objects' health, and its follow-up."""
    if result.detected:             # drift: detect wrote nothing: report what drifted
        return Outcome(Phase.DRIFTED, f"drifted from Git (drift: detect, nothing written): "
                                      f"{health.short(result.drifted_lines())}; `fleetsync sync` "
                                      "corrects it", call.revision, reason="DriftDetected"), ()
    deadline = _health_deadline(ctx, call, app) if result.problems and app.wait else 0.0
    settled = health.decide(result.problems, message, wait=app.wait,
                            timed_out=bool(deadline) and time.time() >= deadline,
                            timeout=app.timeout)
    if settled.phase != Phase.PROGRESSING:
        return Outcome(settled.phase, settled.message, call.revision, reason=settled.reason), ()
    follow_up = Send(tasks_api.CHECK_HEALTH, [call.app, call.cluster, call.run_id],
                     {"revision": call.revision, "deadline": deadline,
                      "objects": list(settled.pending), "round": 0, "trigger": call.trigger},
                     countdown=HEALTH_POLL[0])
    return Outcome(Phase.PROGRESSING, settled.message, call.revision, reason=settled.reason,
                   health_deadline=deadline), (follow_up,)


def _health_deadline(ctx: Context, call: Call, app: Application) -> float:
    """``timeout`` after the unit first turned unhealthy at this revision: a tick that
    finds it still unhealthy keeps the deadline, it does not start the clock again."""
    before = ctx.status.get_status(call.app, call.cluster)
    if before.revision == call.revision and before.health_deadline and before.phase in (
            Phase.PROGRESSING.value, Phase.DEGRADED.value):
        return before.health_deadline
    return time.time() + app.timeout




def _drift_line(corrected: dict[str, list[str]]) -> str:
    """``Deployment/web/web-app spec.replicas: 5 -> 3`` (and how many more objects)."""
    ref, fields = next(iter(corrected.items()))
    more = len(corrected) - 1
    return f"{ref} {'; '.join(fields[:3])}" + (f" (and {more} more object(s))" if more else "")


def _unreachable(exc: TransientError) -> str:
    """Why the cluster did not answer at all (connection refused, timed out), or ""."""
    return str(getattr(exc, "unreachable", "") or "")


def _wait_for_dependencies(ctx: Context, call: Call, waiting: list[str]) -> Next:
    message = f"waiting for {', '.join(waiting)} to be Ready"
    if call.waited >= MAX_DEPENDENCY_WAIT:
        return _finish(ctx, call, "", Outcome(Phase.FAILED, f"gave up {message}", call.revision,
                                              reason="DependencyNotReady"), time.time())
    nxt = _wait(ctx, call, "", message, DEPENDENCY_POLL, bounded=False)
    return replace(nxt, retry_kwargs={**nxt.retry_kwargs,
                                      "waited": call.waited + DEPENDENCY_POLL})


def _refuse_render(ctx: Context, call: Call, app: Application, cluster: Cluster,
                   meta: dict[str, Any], head: str) -> str | None:
    """The revision to render again at when this render entry may not be applied: it is
    not a render of this unit at this revision, or the source is at a newer revision
    already (``head``: an old render replayed, or a commit that landed since). Recorded in
    the unit's history, logged and counted; None when it may be applied."""
    why = stages.render_mismatch(meta, app, cluster, call.revision)
    desired = head or call.revision
    try:                      # in a rollout, the revision the unit's wave allows
        desired = rollouts.allowed_now(ctx, app, cluster.name, desired) or call.revision
    except RedisError:        # a pull worker may not read the record: the request decided
        desired = call.revision
    if not why and desired == call.revision:
        return None
    what = "render_binding" if why else "old_render"
    why = why or f"the source is at {desired[:12]} now"
    message = f"render entry of revision {call.revision[:12]} refused: {why}; rendering again"
    log.warning("render entry refused", why=why, render_key=call.render_key)
    metrics.refused.labels(what).inc()
    ctx.status.add_history(call.app, call.cluster, {
        "revision": call.revision, "trigger": call.trigger, "result": "Refused",
        "message": message, "started_at": now_iso(), "finished_at": now_iso(),
        "run_id": call.run_id, "task_id": call.task_id, "changes": {}})
    return desired


def _back_to_render(ctx: Context, call: Call, owner: str, moved: bool = False) -> Next:
    step = ctx.runs.retry(call.unit, call.run_id, owner, countdown=0,
                          revision=call.revision if moved else "")
    if step.verdict != Verdict.RETRY:
        return Next(_dropped(call, step.verdict, step.other), tuple(_resend(ctx, step.send)))
    return Next({"run_id": call.run_id, "unit": call.unit, "summary": "render again"},
                (_render_send(call),))


# --- every way out of a stage ----------------------------------------------------------

def _transient(ctx: Context, call: Call, owner: str, exc: TransientError, started: float) -> Next:
    metrics.task_failures.labels("apply" if owner else "render", exc.reason).inc()
    if call.attempt + 1 >= MAX_ATTEMPTS:
        return _finish(ctx, call, owner, Outcome(
            Phase.FAILED, f"gave up after {MAX_ATTEMPTS} attempts: {exc}", call.revision,
            reason=exc.reason), started)
    countdown = exc.delay if exc.delay else backoff(call.attempt, cap=300.0)
    return _wait(ctx, call, owner, str(exc), countdown, bounded=True)


def _wait(ctx: Context, call: Call, owner: str, message: str, countdown: float, *,
          bounded: bool) -> Next:
    """The run is queued again, to go on after ``countdown`` (still the unit's one run)."""
    status = UnitStatus(call.app, call.cluster, phase=Phase.PROGRESSING.value,
                        revision=call.revision, message=message, last_synced_at=now_iso(),
                        reason="Waiting", run_id=call.run_id, interval=_interval(ctx, call))
    step = ctx.runs.retry(call.unit, call.run_id, owner, countdown=countdown, status=status)
    if step.verdict != Verdict.RETRY:
        return Next(_dropped(call, step.verdict, step.other), tuple(_resend(ctx, step.send)))
    log.info("run waits", message=message, countdown=round(countdown, 1))
    attempt = call.attempt + 1 if bounded else call.attempt
    return Next(tasks_api.unit_result(call.app, call.cluster, Phase.PROGRESSING.value,
                                      f"next try in {countdown:.0f} s: {message}",
                                      run_id=call.run_id, revision=call.revision),
                retry_in=countdown, retry_kwargs={**call.stage_kwargs(), "attempt": attempt,
                                                  "owner": ""})


def _finish(ctx: Context, call: Call, owner: str, outcome: Outcome, started: float) -> Next:
    """The run is over: its outcome goes to the run record, the status and history."""
    finished = time.time()
    summary = outcome.result or {}
    applied = outcome.phase in APPLIED
    interval, on_removal = _spec_of(ctx, call)
    status = UnitStatus(call.app, call.cluster, phase=outcome.phase.value,
                        revision=call.revision, message=outcome.summary,
                        last_synced_at=now_iso(finished), reason=outcome.reason,
                        counts=summary.get("counts"), failed_key=outcome.failed_key,
                        run_id=call.run_id, health_deadline=outcome.health_deadline,
                        last_success_at=now_iso(finished) if applied else "",
                        interval=interval, on_removal=on_removal,
                        applied_key=_applied_key(ctx, call) if applied else "")
    entry = HistoryEntry(revision=call.revision, trigger=call.trigger,
                         result=outcome.phase.value, message=outcome.summary,
                         started_at=now_iso(started), finished_at=now_iso(finished),
                         run_id=call.run_id, task_id=call.task_id,
                         changes=summary.get("counts", {}), requests=summary.get("requests"),
                         writes=summary.get("writes"),
                         lock_wait_s=round(started - call.requested_at, 3)
                         if call.requested_at else None,
                         drift=summary.get("corrected_drift") or {},
                         **stages.commit_fields(ctx, call.app, call.revision))
    step = ctx.runs.end(call.unit, call.run_id, owner, outcome, status=status, entry=entry)
    result = tasks_api.unit_result(call.app, call.cluster, outcome.phase.value, outcome.summary,
                                   run_id=call.run_id, revision=call.revision, details=summary)
    error = outcome.error if outcome.phase in (Phase.FAILED, Phase.DRIFTED) else None
    more = rollout_next(ctx, call.app) if outcome.phase == Phase.READY else []
    return Next(result, tuple(_resend(ctx, step.send)) + tuple(more), error=error)


def _interval(ctx: Context, call: Call) -> float:
    """The unit's reconcile interval, for staleness; 0 when the spec cannot tell."""
    return _spec_of(ctx, call)[0]


def _spec_of(ctx: Context, call: Call) -> tuple[float, str]:
    """What status keeps from the spec: the unit's reconcile interval (staleness) and its
    application's onRemoval (for when it leaves the spec); 0 and "" when it cannot tell."""
    try:
        fleet = ctx.fleet()
    except FleetsyncError:          # an outcome is recorded even without a readable spec
        return 0.0, ""
    cluster, app = fleet.clusters.get(call.cluster), fleet.applications.get(call.app)
    return (cluster.interval if cluster else 0.0), (app.on_removal if app else "")


def _failed(exc: FleetsyncError, failed_key: str) -> Outcome:
    return Outcome(Phase.FAILED, str(exc), reason=exc.reason, failed_key=failed_key, error=exc)


def _spec_key(ctx: Context, call: Call) -> str:
    """``revision:spec hash``: what a permanent failure is remembered by, and what an
    applied run records."""
    fleet = ctx.fleet()
    app, cluster = stages.resolve(fleet, call.app, call.cluster)
    return f"{call.revision}:{stages.unit_spec_hash(fleet, app, cluster)}"


def _applied_key(ctx: Context, call: Call) -> str:
    """(revision, spec hash) a run applied at: a cluster pass may find the unit in sync
    only at that revision and spec. "" when the spec cannot tell."""
    try:
        return _spec_key(ctx, call)
    except FleetsyncError:
        return ""


def crashed(ctx: Context, call: Call, exc: BaseException) -> None:
    """A bug or an unexpected error: end the run so that nothing waits on it forever."""
    try:
        why = (f"gave up: {exc}" if isinstance(exc, FleetsyncError)
               else f"internal error: {type(exc).__name__}: {exc}")
        _finish(ctx, call, "", Outcome(Phase.FAILED, why, call.revision,
                                       reason=getattr(exc, "reason", "InternalError")),
                time.time())
    except FleetsyncError:
        log.exception("could not record the end of a crashed run")


def _in_spec(ctx: Context, call: Call) -> bool:
    fleet = ctx.fleet()
    app = fleet.applications.get(call.app)
    return (app is not None and call.cluster in fleet.clusters
            and app.clusters.matches(fleet.clusters[call.cluster]))


def _drop(ctx: Context, call: Call) -> Next:
    """A task for a unit the current spec no longer has (or a spec it came from)."""
    log.debug("dropped: unit not in the current fleet spec", unit=call.unit)
    ctx.runs.end(call.unit, call.run_id, "", Outcome(Phase.REMOVED, "not in the fleet spec"),
                 status=None, entry=None)
    return Next({"run_id": call.run_id, "unit": call.unit, "dropped": "not in the fleet spec"})


def _dropped(call: Call, verdict: Verdict, other: str) -> dict[str, Any]:
    why = {Verdict.BUSY: "parked: it runs when the current sync of the unit ends",
           Verdict.SUPERSEDED: f"superseded by run {other}",
           Verdict.DUPLICATE: "a second delivery of a run that began already"}
    return {"run_id": call.run_id, "unit": call.unit, "verdict": verdict.value,
            "summary": why.get(verdict, verdict.value)}


# --- what to send ------------------------------------------------------------------------

def call_of(name: str, args: list[Any], kwargs: dict[str, Any], task_id: str = "") -> Call:
    """The ``Call`` a render or apply task was sent with."""
    app, cluster, third = (list(args) + ["", "", ""])[:3]
    is_apply = name == tasks_api.APPLY
    return Call(app, cluster, kwargs.get("run_id") or task_id, kwargs.get("trigger") or Trigger.BEAT.value,
                float(kwargs.get("requested_at") or 0),
                kwargs.get("revision") or ("" if is_apply else third),
                third if is_apply else "", task_id, int(kwargs.get("attempt") or 0),
                float(kwargs.get("waited") or 0), str(kwargs.get("owner") or ""))


def _render_send(call: Call) -> Send:
    return Send(tasks_api.RENDER, [call.app, call.cluster, call.revision], call.stage_kwargs())


def _apply_send(call: Call) -> Send:
    return Send(tasks_api.APPLY, [call.app, call.cluster, call.render_key],
                {**call.stage_kwargs(), "revision": call.revision})


def _resend(ctx: Context, run_id: str) -> list[Send]:
    """Send a parked (or revived) run's next stage, from its run record."""
    if not run_id:
        return []
    record = ctx.runs.run(run_id)
    if not record.get("unit"):
        return []
    app, cluster = keys.split_unit(record["unit"])
    call = Call(app, cluster, run_id, record.get("trigger", Trigger.COALESCED.value),
                float(record.get("requested_at") or 0), record.get("revision", ""),
                record.get("render_key", ""))
    return [_apply_send(call) if call.render_key else _render_send(call)]
