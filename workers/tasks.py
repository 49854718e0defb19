"""Celery tasks: thin wrappers that take names, call one stage, carry out its ``Next``.

The names and arguments are the public contract of ``shared/tasks_api.py``.
A stage (``workers/run/runner.py``) decides; the task only sends what the stage
asks for, retries with the countdown it gives, and raises the error that ended
a run so that Flower shows it failed. The internal stages (render, apply,
check_health) are signed by the worker that sends them (``workers/sealing.py``)
and refused unsigned: through Flower's API or the broker only ``fleetsync.sync``
and beat's tasks can be started from outside the workers. A Redis or broker blip anywhere is
retried with backoff; anything unexpected still ends the run it belonged to. Once a
stage returned, its ending is written: what fails after that (a send the broker
refuses) is sent again, never the stage, and never ends the run a second time.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable, NoReturn

from celery.exceptions import Reject, Retry

from shared import metrics, tasks_api
from shared.celery_app import send as send_task
from shared.errors import PermanentError, TransientError
from shared.logs import get_logger
from shared.protocol import Phase, backoff
from shared.state.redisconn import RedisError
from shared.state.status import UnitStatus, now_iso
from workers.run import (endings, followup, previewing, removing, requests, runner, stages,
                         sweep)
from workers.run.steps import Call, Next, Send, call_of
from workers.app import app as celery
from workers.images import automation
from workers.context import Context
from workers.context import process_context as context
from workers.sealing import SIGNATURE

log = get_logger("fleetsync.tasks")
MAX_TRANSIENT_RETRIES = 10
# A Redis error anywhere (status, source revisions, the cache) is a blip, as is any
# transient error of ours: retried with backoff, never a failure of the unit.
RETRIED = (TransientError, RedisError)


INTERNAL = (tasks_api.RENDER, tasks_api.APPLY, tasks_api.CHECK_HEALTH, tasks_api.REMOVE,
            tasks_api.PREVIEW_CLUSTER)


def _signed(name: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the workers' signature when ``name`` is an internal stage."""
    if name not in INTERNAL:
        return kwargs
    body = {k: v for k, v in kwargs.items() if k != SIGNATURE}
    return {**body, SIGNATURE: context().sealer.sign(name, args, body)}


def _send(send: Send) -> None:
    options = {"countdown": send.countdown} if send.countdown else {}
    send_task(celery, send.name, send.args, _signed(send.name, send.args, send.kwargs),
              **options)


def _refused(task: Any, args: list[Any], kwargs: dict[str, Any]) -> dict | None:
    """A result when this internal task was not sent by a worker (no valid signature):
    it does nothing, not even end the run it names; it is logged and counted."""
    why = context().sealer.verify(task.name, args, kwargs)
    if not why:
        return None
    log.error("task refused", task=task.name, why=why, task_args=[str(a)[:80] for a in args])
    metrics.refused.labels(task.name).inc()
    return {"refused": why}


def _carry_out(task: Any, nxt: Next) -> dict:
    """Carry out a stage's ``Next``. The stage wrote its ending (if any) already, so what
    fails here never ends or retries the stage again: it would find the run done and
    drop the sends. A send the broker refuses is sent again (``_send_patiently``); one
    given up on is recovered by the next tick (a parked run stays parked until it
    begins: the next request sends it again)."""
    for send in nxt.send:
        _send_patiently(send)
    if nxt.retry_in is not None:
        # the stage bounds its own attempts; a wait (dependency, cluster down) is not one
        args = list(task.request.args or [])
        kwargs = {**(task.request.kwargs or {}), **nxt.retry_kwargs}
        retry(task, countdown=nxt.retry_in, kwargs=_signed(task.name, args, kwargs))
    if nxt.error is not None:
        raise nxt.error
    return nxt.result


PUBLISH_PATIENCE = 30.0     # seconds a send or a retry waits for the broker (a failover takes a few)


def _pause_after(waited: float) -> float:
    return min(0.5 + waited / 2, 5.0)


def _send_patiently(send: Send, pause: Callable[[float], None] = time.sleep) -> None:
    """``_send(send)``, sent again while the broker refuses it, for ``PUBLISH_PATIENCE``
    (kombu's own publish retries cover a broker that is down for a moment, not one that
    answers with an error); then the ``TransientError`` is given back. A send that went
    through after all is a second delivery, which the protocol drops."""
    waited, started = 0.0, time.monotonic()
    while True:
        try:
            return _send(send)
        except TransientError as exc:
            if waited >= PUBLISH_PATIENCE or time.monotonic() - started >= 2 * PUBLISH_PATIENCE:
                raise
            delay = _pause_after(waited)
            log.warning("task not sent, sending again", task=send.name, error=str(exc),
                        in_s=delay)
            pause(delay)
            waited += delay


def retry(task: Any, *, pause: Callable[[float], None] = time.sleep, **options: Any) -> NoReturn:
    """``task.retry(**options)``, sent again while the broker refuses it. Celery turns a
    retry it cannot publish into ``Reject(requeue=False)``: the run's only message would
    be dropped, and the unit would wait for the queued timeout. Should a refused publish
    have gone through after all, the protocol treats the second copy as it treats any
    redelivery. After ``PUBLISH_PATIENCE`` the Reject is given back."""
    waited = 0.0
    while True:
        try:
            raise task.retry(**options)
        except Reject as exc:
            if waited >= PUBLISH_PATIENCE:
                raise
            delay = _pause_after(waited)
            log.warning("retry not sent, sending again", task=task.name, error=str(exc.reason),
                        in_s=delay)
            pause(delay)
            waited += delay


def _stage(task: Any, stage: Callable[[Context, Call], Next],
           call: Call) -> dict:
    return _carry_out(task, _stage_next(task, stage, call))   # from here on, only sends


def _stage_next(task: Any, stage: Callable[[Context, Call], Next], call: Call) -> Next:
    ctx = context()
    try:
        return stage(ctx, call)
    except (Retry, PermanentError):
        raise
    except RETRIED as exc:             # Redis or the spec file blinked outside the stage
        if task.request.retries < MAX_TRANSIENT_RETRIES:
            delay = getattr(exc, "delay", None)
            retry(task, exc=exc, countdown=delay or backoff(task.request.retries))
        return endings.crashed(ctx, call, exc)
    except Exception as exc:
        return endings.crashed(ctx, call, exc)


@celery.task(name=tasks_api.PING)
def ping(payload: dict | None = None) -> dict:
    """Round trip through the broker: proves a worker is consuming."""
    return {"pong": True, "worker": f"{socket.gethostname()}:{os.getpid()}", "echo": payload}


@celery.task(name=tasks_api.FETCH_SOURCE, bind=True, ignore_result=True,
          autoretry_for=RETRIED, retry_backoff=2, retry_backoff_max=300,
          retry_jitter=True, max_retries=MAX_TRANSIENT_RETRIES)
def fetch_source(self: Any, source: str) -> dict:
    """Fetch; a new revision reconciles the clusters that use the source now, not next tick."""
    ctx = context()
    known = ctx.status.source_revision(source)
    revision = stages.fetch(ctx, source)
    clusters: list[str] = []
    if known and known[0] != revision:
        clusters = stages.clusters_using(ctx.fleet(), source)
        for cluster in clusters:
            send_task(celery, tasks_api.RECONCILE_CLUSTER, [cluster], {"trigger": "beat"})
    return {"source": source, "revision": revision, "reconciled": clusters}


@celery.task(name=tasks_api.RECONCILE_CLUSTER, bind=True, ignore_result=True,
          autoretry_for=RETRIED, retry_backoff=2, retry_backoff_max=300,
          retry_jitter=True, max_retries=MAX_TRANSIENT_RETRIES)
def reconcile_cluster(self: Any, cluster: str, trigger: str = "beat") -> dict:
    ctx = context()
    fleet = ctx.fleet()
    if cluster not in fleet.clusters:
        log.debug("dropped: cluster not in the fleet spec", cluster=cluster)
        return {"cluster": cluster, "dropped": "not in the fleet spec"}
    apps = fleet.applications_for(fleet.clusters[cluster])
    statuses = {s.app: s for s in ctx.status.all_statuses(cluster)}
    _forget_removed(ctx, cluster, {a.name for a in apps}, list(statuses.values()))
    revisions: dict[str, str] = {}
    # in pull mode the cluster is read only by its own workers: every unit gets a run there
    found = (sweep.Pass() if ctx.settings.queue_per_cluster
             else sweep.quiet_units(ctx, fleet.clusters[cluster], apps, statuses, revisions))
    units = [_request(ctx, a.name, cluster, trigger, revisions=revisions, on_cluster=found.hold)
             for a in apps if a.name not in found.quiet]
    return {"cluster": cluster, "units": units, **found.summary()}


@celery.task(name=tasks_api.SYNC, bind=True, autoretry_for=RETRIED, retry_backoff=2,
          retry_backoff_max=60, retry_jitter=True, max_retries=MAX_TRANSIENT_RETRIES)
def sync(self: Any, app: str, cluster: str | None = None, trigger: str = "api",
         reason: str = "", by: str = "") -> dict:
    """Sync one application now, on one cluster or on every cluster it targets. ``reason``
    and ``by`` (who asks, as the caller claims it): a change window that holds a unit
    lets the sync through only with a reason, and only if it says ``manualSync: true``."""
    app_name = app
    ctx = context()
    fleet = ctx.fleet()
    if app_name not in fleet.applications:
        raise PermanentError(f"no application named {app_name!r} in {fleet.path}")
    application = fleet.applications[app_name]
    targets = [cluster] if cluster else [c.name for c in fleet.clusters_for(application)]
    revisions: dict[str, str] = {}       # fetched now, once
    units = [_request(ctx, app_name, name, trigger, fresh=True, revisions=revisions,
                      by=by if isinstance(by, str) else "",
                      reason=reason if isinstance(reason, str) else "")
             for name in targets]
    return {"app": app_name, "units": units}


def _request(ctx: Context, app_name: str, cluster: str, trigger: str, *,
             fresh: bool = False, revisions: dict[str, str], by: str = "",
             reason: str = "", on_cluster: Any = None) -> dict:
    try:
        result, sends = requests.request(ctx, app_name, cluster, trigger, fresh, revisions,
                                         by=by, reason=reason, on_cluster=on_cluster)
    except PermanentError as exc:
        return tasks_api.request_result(app_name, cluster, "", joined=False, error=str(exc))
    for send in sends:
        _send_patiently(send)
    return result


REMOVAL_RESEND = 300.0


def _age(stamp: str) -> float:
    try:
        return time.time() - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")


def _forget_removed(ctx: Context, cluster: str, apps: set[str],
                    statuses: list[UnitStatus]) -> None:
    """Units the spec no longer has on ``cluster``: shown ``Removed`` while their objects
    are orphaned or pruned (``fleetsync.remove``), then forgotten."""
    for status in statuses:
        if status.app in apps or (status.phase == Phase.REMOVED.value
                                  and status.reason == "Removing"
                                  and _age(status.last_synced_at) < REMOVAL_RESEND):
            continue                 # its removal is on its way (sent again if it got lost)
        mode = status.on_removal or "orphan"
        ctx.status.set_status(replace(
            status, phase=Phase.REMOVED.value, reason="Removing",
            message=f"left the fleet spec: its objects are being {mode}ed (onRemoval: {mode})",
            last_synced_at=now_iso()))
        _send(Send(tasks_api.REMOVE, [status.app, cluster], {}))


def _call(task: Any, name: str, args: list[Any], kw: dict[str, Any]) -> Call:
    return call_of(name, args, kw, task.request.id or "")


@celery.task(name=tasks_api.RENDER, bind=True, ignore_result=True, max_retries=None)
def render(self: Any, app: str, cluster: str, revision: str, **kw: Any) -> dict:
    """Render a run; in push mode apply it here too (``runner.then_apply``)."""
    args = [app, cluster, revision]
    refused = _refused(self, args, kw)
    if refused:
        return refused
    rendered = _stage_next(self, runner.render, _call(self, tasks_api.RENDER, args, kw))
    return _carry_out(self, runner.then_apply(context(), rendered, self.request.id or ""))


@celery.task(name=tasks_api.APPLY, bind=True, ignore_result=True, max_retries=None)
def apply(self: Any, app: str, cluster: str, render_key: str, **kw: Any) -> dict:
    args = [app, cluster, render_key]
    return _refused(self, args, kw) or _stage(self, runner.apply,
                                              _call(self, tasks_api.APPLY, args, kw))


@celery.task(name=tasks_api.CHECK_HEALTH, bind=True, ignore_result=True,
          autoretry_for=RETRIED, retry_backoff=2, retry_backoff_max=30, retry_jitter=True,
          max_retries=MAX_TRANSIENT_RETRIES)
def check_health(self: Any, app: str, cluster: str, run_id: str, **kw: Any) -> dict:
    """A run's health follow-up: cheap reads, no lock, then settle or look again later."""
    refused = _refused(self, [app, cluster, run_id], kw)
    if refused:
        return refused
    call = followup.health_call_of([app, cluster, run_id], kw, self.request.id or "")
    return _carry_out(self, followup.check_health(context(), call))


@celery.task(name=tasks_api.REMOVE, bind=True, ignore_result=True, autoretry_for=RETRIED,
          retry_backoff=2, retry_backoff_max=60, retry_jitter=True,
          max_retries=MAX_TRANSIENT_RETRIES)
def remove(self: Any, app: str, cluster: str, **kw: Any) -> dict:
    """An application left the spec on this cluster: orphan or prune what it applied."""
    refused = _refused(self, [app, cluster], kw)
    if refused:
        return refused
    return _carry_out(self, removing.remove(context(), app, cluster))


@celery.task(name=tasks_api.PREVIEW, bind=True, autoretry_for=RETRIED, retry_backoff=2,
          retry_backoff_max=60, retry_jitter=True, max_retries=MAX_TRANSIENT_RETRIES)
def preview(self: Any, preview_id: str, source: str, ref: str) -> dict:
    """A preview created in Redis (``scheduler.previews.start``): resolve its revisions
    without moving the source, pick its units, send one signed part per cluster."""
    result, sends = previewing.begin(context(), str(preview_id), str(source), str(ref))
    for send in sends:
        _send_patiently(send)
    return result


@celery.task(name=tasks_api.PREVIEW_CLUSTER, bind=True, autoretry_for=RETRIED,
          retry_backoff=2, retry_backoff_max=60, retry_jitter=True,
          max_retries=MAX_TRANSIENT_RETRIES)
def preview_cluster(self: Any, preview_id: str, cluster: str, **kw: Any) -> dict:
    """One cluster's part of a preview: render, compare, dry-run; never a write."""
    refused = _refused(self, [preview_id, cluster], kw)
    if refused:
        return refused
    apps, added, removed = ([str(a) for a in kw.get(name) or []]
                            for name in ("units", "added", "removed"))
    ctx = context()
    try:
        return previewing.part(ctx, preview_id, cluster, apps, added, removed)
    except RETRIED:
        if self.request.retries < MAX_TRANSIENT_RETRIES:
            raise
        return previewing.part_failed(ctx, preview_id, cluster, apps + added + removed,
                                      RuntimeError("Redis or the cluster stayed away "
                                                   "through every retry"))
    except Exception as exc:            # never leave the preview waiting for this part
        log.exception("preview part broke", preview=preview_id, cluster=cluster)
        return previewing.part_failed(ctx, preview_id, cluster, apps + added + removed, exc)


MAX_POLICIES = 500      # names in one scan_images call (a spec's images: is far smaller)


@celery.task(name=tasks_api.SCAN_IMAGES, bind=True, autoretry_for=RETRIED, retry_backoff=2,
          retry_backoff_max=120, retry_jitter=True, max_retries=MAX_TRANSIENT_RETRIES)
def scan_images(self: Any, policies: list | None = None, force: bool = False,
                sources: list | None = None, trigger: str = "api") -> dict:
    """Scan image policies, then commit what they chose to each Git source with
    ``imageUpdates`` (``workers.images.automation``). Arguments are names only; the
    registries' and Git's credentials are read here, from this worker's environment."""
    names = _names(policies)
    options = automation.PassOptions(force=force is True, sources=tuple(_names(sources)),
                                     owner=f"{socket.gethostname()}:{os.getpid()}:"
                                           f"{self.request.id or ''}")
    return automation.run_pass(context(), names, options, os.environ, _fetch_now)


def _names(given: Any) -> list[str]:
    """Names from a task argument that anyone may have sent: strings only, capped."""
    if not isinstance(given, (list, tuple)):
        return []
    return [str(n)[:253] for n in given[:MAX_POLICIES] if isinstance(n, str) and n]


def _fetch_now(source: str) -> None:
    """A pushed image update is a new revision: fetch it now, as a push webhook would."""
    _send_patiently(Send(tasks_api.FETCH_SOURCE, [source], {}))
