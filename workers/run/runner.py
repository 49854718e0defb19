"""One run of a sync unit, stage by stage, through the protocol.

    request ──> render ──> apply ──> end (outcome: status, history, run record)
                  │          │          └──> check_health, while Progressing on health
                  └──────────┴──> retry (queued again) / superseded / parked

Each function here is one stage of a run: it resolves its unit from the spec once
(``stages.Unit``), asks ``ctx.runs`` (the protocol) whether the run may go on,
calls one domain function of ``workers/run/stages.py``, and returns a ``Next``:
the run's small result, the tasks to send, and whether to retry this task after
a countdown. It never calls Celery: ``workers/tasks.py`` carries out the
``Next``. Every way out of a stage goes through ``workers/run/endings.py``
(``finish``: the run is over; ``wait``: it is queued again), which is what keeps
the protocol's promise: every run ends with an outcome, and its marker is always
cleared.

Around it: ``workers/run/requests.py`` (a sync is asked for),
``workers/run/steps.py`` (the values a stage takes and gives),
``workers/run/fencing.py`` (no write with a stale lock),
``workers/run/health.py`` (verdicts to a phase), ``workers/run/followup.py``
(the health follow-up) and ``workers/run/removing.py`` (an application that left
the spec).

Stages never re-enter each other under the lock: apply with a missing render
goes back to the render stage (releasing the lock), it does not render itself.
In push mode the render's task goes on to the apply stage itself (``then_apply``),
after the render, before the lock: one task per run.

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
from typing import Any, Callable

from shared import metrics, tasks_api
from shared.errors import PermanentError, TransientError
from shared.logs import bind, get_logger
from shared.protocol import Phase, Verdict, backoff
from shared.state.redisconn import RedisError
from shared.spec.model import Application
from shared.state.runs import Begun, Outcome
from shared.state.status import now_iso
from workers.context import Context
from workers.run import cluster_hold, endings, health, requests, rollouts, stages, windows
from workers.run.endings import MAX_ATTEMPTS
from workers.run.fencing import RunFence, apply_fenced
from workers.run.stages import Unit
from workers.run.steps import Call, Next, Send, apply_send, call_of, render_send

log = get_logger("fleetsync.runner")

DEPENDENCY_POLL = 3.0               # seconds between looks at a dependency's phase
MAX_DEPENDENCY_WAIT = 900.0
PROBE_TTL = 30.0


# --- render -------------------------------------------------------------------------

def render(ctx: Context, call: Call) -> Next:
    bind(app=call.app, cluster=call.cluster, run_id=call.run_id, stage="render")
    unit = stages.unit_in_spec(ctx, call.app, call.cluster)
    if unit is None:
        return endings.drop(ctx, call)
    # push mode: the apply's begin follows in this task and decides what the touch would
    # (a copy of an earlier try, a newer run, a second delivery), so the touch is put
    # off until this stage itself has an ending to write; only the revision the run
    # serves now (a request may have joined it since it was sent) is read first
    touched = not ctx.settings.apply_after_render
    if touched:
        step, revision = ctx.runs.touch(call.unit, call.run_id, call.tries)
        if step.verdict != Verdict.GO:
            return Next(endings.dropped(call, step.verdict, step.other))
    else:
        revision = ctx.runs.revision(call.unit, call.run_id)
    call = replace(call, revision=revision or call.revision)
    started = time.time()

    def ending(end: Callable[[], Next]) -> Next:
        """An ending this stage writes: only for a run the touch lets go on."""
        if not touched:
            step, _ = ctx.runs.touch(call.unit, call.run_id, call.tries)
            if step.verdict != Verdict.GO:
                return Next(endings.dropped(call, step.verdict, step.other))
        return end()

    held = rollouts.suspension(ctx, call.app, call.cluster)
    if held is not None:             # suspended while it was queued: not rendered
        before, message = ctx.status.get_status(call.app, call.cluster).revision, held.message()
        return ending(lambda: endings.finish(ctx, replace(call, revision=before), "", Outcome(
            Phase.SUSPENDED, message, before, reason="Suspended"), started, unit))
    try:
        rendered = stages.render(ctx, unit, call.revision)
    except PermanentError as exc:
        return ending(lambda: endings.finish(
            ctx, call, "", endings.failed(exc, unit.spec_key(call.revision)), started, unit))
    except TransientError as exc:
        return ending(lambda: endings.transient(ctx, call, "", exc, started, unit))
    return Next({"summary": f"rendered {len(rendered.objects)} object(s)"
                            + (" (cached)" if rendered.hit else "") + "; apply next",
                 "unit": call.unit, "revision": call.revision, "run_id": call.run_id,
                 "objects": len(rendered.objects), "cache_hit": rendered.hit,
                 "warnings": list(rendered.warnings[:10])},
                (apply_send(replace(call, render_key=rendered.key)),))


def then_apply(ctx: Context, rendered: Next, task_id: str) -> Next:
    """Push mode: the apply the render stage asks for, run in the render's task rather than
    sent (``Settings.apply_after_render``): one task and one Flower row per run, no second
    publish, delivery and acknowledgement. The stage is the apply task's own, with its own
    protocol step (``begin``), so everything it promises holds. What it would retry (a
    wait, a Redis failure) is sent as an apply task with that countdown: a retry of the
    render's task would render again."""
    applies = [s for s in rendered.send if s.name == tasks_api.APPLY and not s.countdown]
    if (not ctx.settings.apply_after_render or len(applies) != 1
            or rendered.retry_in is not None or rendered.error is not None):
        return rendered
    send, others = applies[0], tuple(s for s in rendered.send if s is not applies[0])
    call = call_of(tasks_api.APPLY, send.args, send.kwargs, task_id)
    try:
        done = apply(ctx, call)
    except (TransientError, RedisError) as exc:     # outside the stage: as its task would
        log.warning("apply sent after a Redis failure", error=str(exc))
        return replace(rendered, send=others + (replace(send, countdown=backoff(0)),))
    except PermanentError:
        raise
    except Exception as exc:
        done = endings.crashed(ctx, call, exc)
    if done.retry_in is not None:
        later = Send(tasks_api.APPLY, send.args, {**send.kwargs, **done.retry_kwargs},
                     countdown=done.retry_in)
        done = replace(done, send=done.send + (later,), retry_in=None, retry_kwargs={})
    summary = str(rendered.result.get("summary") or "").removesuffix("; apply next")
    return replace(done, send=others + done.send,
                   result={**done.result, **({"render": summary} if summary else {})})


# --- apply ---------------------------------------------------------------------------

def apply(ctx: Context, call: Call) -> Next:
    bind(app=call.app, cluster=call.cluster, run_id=call.run_id, revision=call.revision,
         stage="apply")
    unit = stages.unit_in_spec(ctx, call.app, call.cluster)
    if unit is None:
        return endings.drop(ctx, call)
    cluster = unit.cluster
    waiting = stages.waiting_for(ctx, unit.fleet, unit.app, cluster)
    if waiting:
        return _wait_for_dependencies(ctx, call, waiting, unit)
    # the cluster's own hold is read before the lock is taken: a slow API server must
    # not eat the lock's TTL before its lease is renewed (a cluster marked down: not read)
    on_cluster = cluster_hold.read(ctx, cluster, unless_down=True)
    owner = uuid.uuid4().hex
    begun = ctx.runs.begin(call.unit, call.run_id, owner, cluster.name,
                           park={"render_key": call.render_key, "revision": call.revision},
                           taking_over=call.owner, tries=call.tries)
    verdict = begun.step.verdict
    if verdict != Verdict.STARTED:
        return Next(endings.dropped(call, verdict, begun.step.other))
    try:
        return _apply_started(ctx, call, unit, begun, owner, on_cluster)
    except (TransientError, RedisError) as exc:
        if call.attempt + 1 >= MAX_ATTEMPTS:
            return endings.crashed(ctx, call, exc, owner)
        # Redis failed under this attempt (a restart, a failover): the lock could not be
        # released, so the retry carries its owner and takes the lock over at once
        log.warning("apply retried after a Redis failure", error=str(exc))
        countdown = backoff(call.attempt, cap=30.0)
        return Next({"run_id": call.run_id, "unit": call.unit,
                     "summary": f"retrying in {countdown:.0f} s: {exc}"}, retry_in=countdown,
                    retry_kwargs={**call.stage_kwargs(), "attempt": call.attempt + 1,
                                  "owner": owner})
    except Exception as exc:        # a bug: the run ends here, with the lock it holds
        return endings.crashed(ctx, call, exc, owner)


def _apply_started(ctx: Context, call: Call, unit: Unit, begun: Begun, owner: str,
                   on_cluster: cluster_hold.ClusterHold | None = None) -> Next:
    """The apply stage once the run holds the lock: every way out releases it."""
    app, cluster = unit.app, unit.cluster
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
            return _wait_for_cluster(ctx, call, owner, unit, down)
        probing = down is not None
    entry = ctx.cache.get_entry(call.render_key) if call.render_key else None
    if entry is None:                # expired, flushed, or refused as tampered: render again
        return _back_to_render(ctx, call, owner)
    objects, meta = entry
    head, source_error = stages.recorded_source(ctx, app.source)     # one read for both
    desired = _desired(ctx, call, unit, head)
    held, stay = _window(ctx, call, unit, desired, on_cluster)
    if held is not None and not stay:       # held before it ever applied: nothing to do
        return endings.finish(ctx, replace(call, revision=""), owner, held.tell(Outcome(
            Phase.PROGRESSING, held.message(), "", reason="HeldByWindow"), suffix=False),
            started, unit)
    refused = _refuse_render(ctx, call, unit, meta, stay or desired,
                             held.message() if held is not None else "")
    if refused is not None:
        return _back_to_render(ctx, replace(call, revision=refused), owner, moved=True)
    lost = threading.Event()
    with ctx.runs.renewing(call.unit, owner, on_lost=lost.set) as lease:
        try:
            result = apply_fenced(ctx, call, unit, objects,
                                   RunFence(ctx, call.unit, owner, begun.token, lease, lost),
                                   detect_only=held is not None and not held.drift_corrected)
        except PermanentError as exc:
            if exc.drifted:          # retried every tick: what refused may let go
                return endings.finish(ctx, call, owner, Outcome(
                    Phase.DRIFTED, f"drifted from Git and not corrected "
                                   f"({', '.join(exc.drifted[:3])}): {exc}", call.revision,
                    reason=exc.reason, error=exc), started, unit)
            return endings.finish(ctx, call, owner,
                                  endings.failed(exc, unit.spec_key(call.revision)), started,
                                  unit)
        except TransientError as exc:
            if stages.unreachable(exc):
                down = ctx.clusters.mark_down(cluster.name, ctx.kube(cluster).server,
                                              stages.unreachable(exc))
                return _wait_for_cluster(ctx, call, owner, unit, down)
            return endings.transient(ctx, call, owner, exc, started, unit)
    if probing:
        ctx.clusters.mark_up(cluster.name)
    summary = result.to_dict()
    metrics.record_apply(summary.get("counts", {}), summary.get("drift_corrections", 0))
    message = stages.message(summary.get("counts", {}))
    if summary.get("corrected_drift"):
        message = f"corrected drift: {_drift_line(summary['corrected_drift'])} ({message})"
    if source_error:              # the last good revision stays applied: say why
        message += f"; source {app.source} stays at {call.revision[:12]}: {source_error}"
    if result.suspended:          # paused objects do not hold the unit back: say so
        message += f"; suspended: {health.short(list(result.suspended))}"
    if result.notes:              # what per-object annotations left alone, and warnings
        message += f"; {health.short(list(result.notes))}"
    outcome, follow_up = _health_outcome(ctx, call, app, result, message)
    if held is not None:          # applied nothing new: what it has, and what waits
        outcome = held.tell(outcome)
    nxt = endings.finish(ctx, call, owner, replace(outcome, result=summary), started, unit)
    more = requests.rollout_next(ctx, call.app) if outcome.phase == Phase.READY else []
    return replace(nxt, send=nxt.send + follow_up + tuple(more))


# --- health ------------------------------------------------------------------------------

HEALTH_POLL = (1.0, 1.0, 1.5, 2.5, 5.0)     # follow-up delays by round, in health_poll units


def health_poll(ctx: Context, round_: int) -> float:
    """Seconds before health follow-up ``round_``: 2, 2, 3, 5, then every 10 s by default
    (``FLEETSYNC_HEALTH_POLL`` sets the first)."""
    return ctx.settings.health_poll * HEALTH_POLL[min(round_, len(HEALTH_POLL) - 1)]


def _health_outcome(ctx: Context, call: Call, app: Application, result: Any,
                    message: str) -> tuple[Outcome, tuple[Send, ...]]:
    """The phase an applied run ends in, from its objects' health, and its follow-up."""
    if result.detected:             # drift: detect wrote nothing: report what drifted
        return Outcome(Phase.DRIFTED, f"drifted from Git (drift: detect, nothing written): "
                                      f"{health.short(result.drifted_lines())}; "
                                      "`fleetsync sync` corrects it", call.revision, reason="DriftDetected"), ()
    deadline = _health_deadline(ctx, call, app) if result.problems and app.wait else 0.0
    settled = health.decide(result.problems, message, wait=app.wait,
                            timed_out=bool(deadline) and time.time() >= deadline,
                            timeout=app.timeout)
    if settled.phase != Phase.PROGRESSING:
        return Outcome(settled.phase, settled.message, call.revision, reason=settled.reason), ()
    follow_up = Send(tasks_api.CHECK_HEALTH, [call.app, call.cluster, call.run_id],
                     {"revision": call.revision, "deadline": deadline,
                      "objects": list(settled.pending), "round": 0, "trigger": call.trigger},
                     countdown=health_poll(ctx, 0))
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


def _wait_for_cluster(ctx: Context, call: Call, owner: str, unit: Unit, down: Any) -> Next:
    """The cluster is down: the run waits, without a request, until its next probe."""
    return endings.wait(ctx, call, owner, down.message(),
                        max(1.0, down.next_at - time.time()) + 0.5, bounded=False, unit=unit)


def _wait_for_dependencies(ctx: Context, call: Call, waiting: list[str], unit: Unit) -> Next:
    message = f"waiting for {', '.join(waiting)} to be Ready"
    if call.waited >= MAX_DEPENDENCY_WAIT:
        return endings.finish(ctx, call, "", Outcome(
            Phase.FAILED, f"gave up {message}", call.revision, reason="DependencyNotReady"),
            time.time(), unit)
    nxt = endings.wait(ctx, call, "", message, DEPENDENCY_POLL, bounded=False, unit=unit)
    return replace(nxt, retry_kwargs={**nxt.retry_kwargs,
                                      "waited": call.waited + DEPENDENCY_POLL})


def _desired(ctx: Context, call: Call, unit: Unit, head: str) -> str:
    """The revision the unit should have now: the source's (``head``), or in a rollout
    the one its wave allows."""
    try:
        return rollouts.allowed_now(ctx, unit.app, unit.cluster.name,
                                    head or call.revision) or call.revision
    except RedisError:        # a pull worker may not read the record: the request decided
        return call.revision


def _window(ctx: Context, call: Call, unit: Unit, desired: str,
            on_cluster: cluster_hold.ClusterHold | None) -> tuple[windows.Hold | None, str]:
    """A change window's hold on the unit now, or the cluster's own (``on_cluster``: its
    ConfigMap, read by the apply stage, since the pull workers alone reach their
    cluster), and the revision it stays at ("" when it never applied one); (None, "")
    when it may change."""
    decided = windows.decision(unit.fleet, unit.app, unit.cluster)
    if decided.allowed and on_cluster is None:
        return None, ""
    applied = windows.applied_revision(ctx.status.get_status(call.app, call.cluster))
    held = windows.hold(ctx, unit.fleet, unit.app, unit.cluster, desired, applied, decided,
                        on_cluster)
    return (held, applied) if held is not None else (None, "")


def _refuse_render(ctx: Context, call: Call, unit: Unit, meta: dict[str, Any],
                   desired: str, held: str = "") -> str | None:
    """The revision to render again at when this render entry may not be applied: it is
    not a render of this unit at this revision, or the unit should have another one now
    (``desired``: an old render replayed, a commit that landed since, or a change window
    that holds the unit at the revision it has). Recorded in the unit's history, logged
    and counted; None when it may be applied."""
    app, cluster = unit.app, unit.cluster
    why = stages.render_mismatch(meta, app, cluster, call.revision)
    if not why and desired == call.revision:
        return None
    what = "render_binding" if why else "old_render"
    why = why or (f"{held}; it stays at {desired[:12]}" if held and desired != call.revision
                  else f"the source is at {desired[:12]} now")
    message = f"render entry of revision {call.revision[:12]} refused: {why}; rendering again"
    log.warning("render entry refused", why=why, render_key=call.render_key)
    metrics.refused.labels(what).inc()
    ctx.status.add_history(call.app, call.cluster, {
        "revision": call.revision, "trigger": call.trigger, "result": "Refused",
        "message": message, "started_at": now_iso(), "finished_at": now_iso(),
        "run_id": call.run_id, "task_id": call.task_id, "changes": {}})
    return desired


def _back_to_render(ctx: Context, call: Call, owner: str, moved: bool = False) -> Next:
    call = replace(call, tries=call.tries + 1)
    step = ctx.runs.retry(call.unit, call.run_id, owner, countdown=0, tries=call.tries,
                          revision=call.revision if moved else "")
    if step.verdict != Verdict.RETRY:
        return Next(endings.dropped(call, step.verdict, step.other),
                    tuple(endings.resend(ctx, call.unit, step.send)))
    return Next({"run_id": call.run_id, "unit": call.unit, "summary": "render again"},
                (render_send(call),))


