"""Celery tasks: thin wrappers that take names, call one pipeline stage, return a small dict.

Task names and JSON arguments are a public API (Flower's REST interface and
operators' scripts call them):

    fleetsync.reconcile_cluster(cluster)            beat, every cluster.interval
    fleetsync.fetch_source(source)                  beat, every source.interval
    fleetsync.sync(app, cluster=None)               CLI, scripts, Flower
    fleetsync.render(app, cluster, revision)        enqueued by the two above
    fleetsync.apply(app, cluster, render_key)       enqueued by render

Transient errors are retried by Celery with exponential backoff and jitter;
permanent ones are recorded as ``Failed`` and raised (Flower shows them red).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from functools import lru_cache
from typing import Any

from shared.errors import DependencyNotReady, PermanentError, TransientError
from shared.settings import from_env
from workers import pipeline
from workers.app import app

RETRY: dict[str, Any] = {
    "autoretry_for": (TransientError,),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 10,
}


@lru_cache(maxsize=1)
def context() -> pipeline.Context:
    """This worker process's clients, built once from the environment."""
    return pipeline.Context.connect(from_env())


@app.task(name="fleetsync.ping")
def ping(payload: dict | None = None) -> dict:
    """Round trip through the broker: proves a worker is consuming."""
    return {"pong": True, "worker": f"{socket.gethostname()}:{os.getpid()}", "echo": payload}


@app.task(name="fleetsync.fetch_source", bind=True, ignore_result=True, **RETRY)
def fetch_source(self: Any, source: str) -> dict:
    """Fetch; a new revision reconciles the clusters that use the source now, not next tick."""
    ctx = context()
    known = ctx.status.source_revision(source) if ctx.status else None
    revision = pipeline.fetch(ctx, source)
    clusters: list[str] = []
    if known and known[0] != revision:
        clusters = pipeline.clusters_using(ctx.fleet(), source)
        for cluster in clusters:
            app.send_task("fleetsync.reconcile_cluster", args=[cluster])
    return {"source": source, "revision": revision, "reconciled": clusters}


@app.task(name="fleetsync.reconcile_cluster", bind=True, ignore_result=True, **RETRY)
def reconcile_cluster(self: Any, cluster: str, trigger: str = "beat") -> dict:
    ctx = context()
    fleet = ctx.fleet()
    if cluster not in fleet.clusters:
        return {"cluster": cluster, "skipped": "not in the fleet spec"}
    apps = fleet.applications_for(fleet.clusters[cluster])
    pipeline.forget_removed(ctx, cluster, {a.name for a in apps})
    units = [_enqueue(ctx, a.name, cluster, trigger, fresh=False) for a in apps]
    return {"cluster": cluster, "units": units}


@app.task(name="fleetsync.sync", bind=True, **RETRY)
def sync(self: Any, app: str, cluster: str | None = None, trigger: str = "api") -> dict:
    """Sync one application now, on one cluster or on every cluster it targets."""
    ctx = context()
    fleet = ctx.fleet()
    if app not in fleet.applications:
        raise PermanentError(f"no application named {app!r} in {fleet.path}")
    targets = [cluster] if cluster else [c.name for c in fleet.clusters_for(fleet.applications[app])]
    fresh: set[str] = set()
    units = []
    for name in targets:
        units.append(_enqueue(ctx, app, name, trigger, fresh=fleet.applications[app].source not in fresh))
        fresh.add(fleet.applications[app].source)
    return {"app": app, "units": units}


def _enqueue(ctx: pipeline.Context, app_name: str, cluster: str, trigger: str, fresh: bool) -> dict:
    """Resolve the revision and send render (which sends apply, with a known task id)."""
    fleet = ctx.fleet()
    app_spec, _ = pipeline.resolve(fleet, app_name, cluster)
    try:
        revision = (pipeline.fetch(ctx, app_spec.source) if fresh
                    else pipeline.current_revision(ctx, app_spec.source))
    except PermanentError as exc:
        pipeline.record_stage_failure(ctx, app_name, cluster, "", exc, trigger, "fetch")
        return {"app": app_name, "cluster": cluster, "error": exc.message}
    wanted = str(uuid.uuid4())
    apply_id = pipeline.enqueue_once(ctx, app_name, cluster, wanted)
    if apply_id == wanted:
        known = pipeline.known_render(ctx, app_name, cluster, revision)
        if known:
            _send_apply(app_name, cluster, known, revision, trigger, time.time(), apply_id)
        else:
            app.send_task("fleetsync.render", args=[app_name, cluster, revision],
                          kwargs={"trigger": trigger, "apply_task_id": apply_id,
                                  "requested_at": time.time()})
    return {"app": app_name, "cluster": cluster, "revision": revision, "apply_task_id": apply_id,
            "coalesced": apply_id != wanted}


@app.task(name="fleetsync.render", bind=True, ignore_result=True, **RETRY)
def render(self: Any, app_name: str, cluster: str, revision: str, trigger: str = "beat",
           apply_task_id: str | None = None, requested_at: float | None = None) -> dict:
    ctx = context()
    try:
        result = pipeline.render(ctx, app_name, cluster, revision)
    except PermanentError as exc:
        pipeline.record_stage_failure(ctx, app_name, cluster, revision, exc, trigger, "render")
        pipeline.started(ctx, app_name, cluster)
        raise
    _send_apply(app_name, cluster, result["render_key"], revision, trigger,
                requested_at or time.time(), apply_task_id)
    result.pop("_objects")
    return result


def _send_apply(app_name: str, cluster: str, render_key: str, revision: str, trigger: str,
                requested_at: float, task_id: str | None) -> None:
    app.send_task("fleetsync.apply", args=[app_name, cluster, render_key],
                  kwargs={"revision": revision, "trigger": trigger, "requested_at": requested_at},
                  task_id=task_id)


@app.task(name="fleetsync.apply", bind=True, **RETRY)
def apply(self: Any, app_name: str, cluster: str, render_key: str, revision: str = "",
          trigger: str = "beat", requested_at: float | None = None) -> dict:
    req = pipeline.ApplyRequest(app_name, cluster, revision, render_key, trigger,
                                self.request.id or "", requested_at)
    try:
        result = pipeline.apply(context(), req)
    except DependencyNotReady as exc:
        raise self.retry(exc=exc, countdown=3, max_retries=200)
    if result.pop("rerun", False):
        app.send_task("fleetsync.sync", args=[app_name, cluster], kwargs={"trigger": "coalesced"})
    return result
