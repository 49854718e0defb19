"""A sync of one unit is asked for: join the queued run, or queue one (``request``).

Beat's reconcile, the CLI, scripts and Flower's API all come here through
``fleetsync.sync`` and ``fleetsync.reconcile_cluster``. A request looks up the
revision its source is at (``revision_for``: once per source per reconcile),
asks the rollout in waves which revision the unit may have now, and asks the
protocol (``ctx.runs``) whether to queue a run, join the queued one, or skip a
revision and spec that failed permanently. A unit held (suspended, or waiting
for its wave) is not fetched or rendered: only its status is told
(``_not_run``). A unit that a change window (or its cluster's own hold) holds
is run at the revision it has, not the source's (``workers/run/windows.py``); a
sync on demand passes a window only with a reason, when the window allows it.
When a unit turns Ready, ``rollout_next`` starts the next wave.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from shared import tasks_api
from shared.errors import FleetsyncError, PermanentError
from shared.logs import get_logger
from shared.protocol import Phase, Trigger, Verdict
from shared.spec.model import Application, Cluster, Fleet
from shared.state import keys
from shared.state.redisconn import RedisError
from shared.state.runs import Outcome
from shared.state.status import now_iso
from workers.context import Context
from workers.render.cache import memo_key
from workers.run.cluster_hold import ClusterHold
from workers.run import endings, rollouts, stages, windows
from workers.run.steps import Call, Send, apply_send, render_send

log = get_logger("fleetsync.runner")


def request(ctx: Context, app_name: str, cluster_name: str, trigger: str,
            fresh: bool = False, revisions: dict[str, str] | None = None,
            by: str = "", reason: str = "", on_cluster: ClusterHold | None = None
            ) -> tuple[dict[str, Any], list[Send]]:
    """A sync of one unit is asked for: join the queued run, or queue one.

    ``revisions`` carries the sources' revisions already looked up by the caller
    (one look-up per source per reconcile, not one per unit). ``by`` and ``reason``:
    who asks for a sync on demand and why (a change window may let it through).
    ``on_cluster``: the hold the cluster's own ConfigMap puts on it, as the cluster
    pass read it (None: not held, or not read here; the apply stage reads it too)."""
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
            endings.finish(ctx, Call(app_name, cluster_name, step.other, trigger, now), "",
                    endings.failed(exc, ""), started=now)
        return tasks_api.request_result(app_name, cluster_name, step.other, joined=True,
                                        error=str(exc)), []
    head, gate = revision, rollouts.gate(ctx, fleet, app, cluster_name, revision)
    admitted = _admitted(ctx, app, gate, head, but=cluster_name)
    revision = gate.revision
    if not revision:                # the first rollout has not reached this unit's wave
        return _not_run(ctx, Call(app_name, cluster_name, "", trigger, now, ""), Outcome(
            Phase.PROGRESSING, gate.waiting, "", reason="WaitingForWave")), admitted
    window = _window(ctx, fleet, app, cluster, revision, trigger, by, reason, on_cluster)
    if isinstance(window, str):     # a sync on demand that the window does not let through
        return tasks_api.request_result(app_name, cluster_name, "", joined=False,
                                        revision=revision, error=window), admitted
    if window is not None:
        hold, stay = window
        if not stay:                # held before it ever applied: nothing to stay at
            return _not_run(ctx, Call(app_name, cluster_name, "", trigger, now, ""), hold.tell(
                Outcome(Phase.PROGRESSING, hold.message(), "", reason="HeldByWindow"),
                suffix=False)), admitted
        revision = stay             # stays at what it has: health and drift still looked at
    spec_hash = stages.unit_spec_hash(fleet, app, cluster)
    step, render_key = ctx.runs.request_reading(
        app_name, cluster_name, trigger=trigger, revision=revision, requested_at=now,
        failed_key=f"{revision}:{spec_hash}" if trigger == Trigger.BEAT else "",
        memo=memo_key(keys.unit_id(app_name, cluster_name), revision, spec_hash))
    if step.verdict == Verdict.SKIPPED:
        return tasks_api.request_result(app_name, cluster_name, "", joined=False,
                                        revision=revision,
                                        error="failed permanently at this revision and spec"), []
    call = Call(app_name, cluster_name, step.other, trigger, now, revision)
    sends: list[Send] = []
    if step.verdict == Verdict.QUEUED:
        if app.suspend:
            endings.finish(ctx, call, "", Outcome(Phase.SUSPENDED, "suspended in the fleet spec",
                                           revision), started=now)
        elif render_key:     # rendered at this revision and spec already: straight to apply
            sends.append(apply_send(replace(call, render_key=render_key)))
        else:
            sends.append(render_send(call))
    elif step.verdict == Verdict.REVIVE:
        sends += endings.resend(ctx, keys.unit_id(app_name, cluster_name), step.other)
    return tasks_api.request_result(app_name, cluster_name, step.other,
                                    joined=step.verdict != Verdict.QUEUED,
                                    revision=revision), sends + admitted


def _window(ctx: Context, fleet: Fleet, app: Application, cluster: Cluster, head: str,
            trigger: str, by: str, reason: str,
            on_cluster: ClusterHold | None) -> tuple[windows.Hold, str] | str | None:
    """A change window's hold on the unit: None (it may change), the hold and the
    revision the unit stays at ("" when it has none), or why a sync on demand is refused.
    A sync on demand with a reason passes when every holding window allows it."""
    decided = windows.decision(fleet, app, cluster)
    if decided.allowed and on_cluster is None:
        return None
    applied = windows.applied_revision(ctx.status.get_status(app.name, cluster.name))
    held = windows.hold(ctx, fleet, app, cluster, head, applied, decided, on_cluster)
    if held is None:
        return None
    if trigger in (Trigger.CLI.value, Trigger.API.value):
        refused = windows.refusal(held, reason.strip() if isinstance(reason, str) else "")
        if refused:
            return refused
        windows.let_through(ctx, app.name, cluster.name, held, head, trigger, by, reason)
        return None
    return held, applied


def _not_run(ctx: Context, call: Call, outcome: Outcome) -> dict[str, Any]:
    """A unit held (suspended, or waiting for its wave): nothing is fetched or rendered.
    The hold is told once through a run of its own (status, history, the requester);
    a beat tick that finds it told already only refreshes the status's time."""
    before = ctx.status.get_status(call.app, call.cluster)
    if call.trigger == Trigger.BEAT and before.phase == outcome.phase.value \
            and before.message == outcome.summary and before.held_by == outcome.held_by:
        ctx.status.set_status(replace(before, last_synced_at=now_iso()))
        return tasks_api.request_result(call.app, call.cluster, "", joined=False,
                                        revision=before.revision, error=outcome.summary)
    step = ctx.runs.request(call.app, call.cluster, trigger=call.trigger,
                            revision=call.revision, requested_at=call.requested_at)
    if step.verdict == Verdict.QUEUED:
        endings.finish(ctx, replace(call, run_id=step.other), "", outcome, started=call.requested_at)
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
