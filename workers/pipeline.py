"""The sync pipeline, stage by stage: fetch, render, apply; shared by tasks and the CLI.

Each stage is one function over a ``Context`` (the clients of this process) and
names: ``fetch`` turns a source into a revision, ``render`` turns (app, cluster,
revision) into a render key in the cache, ``apply`` takes a render key and makes
the cluster match under the unit's lock, then records status, history and
metrics. Celery tasks call one stage each; ``fleetsync sync --local`` calls
``sync_unit``, which runs all three in this process.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import nullcontext
from functools import cached_property
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from shared import metrics
from shared.errors import (DependencyNotReady, FleetsyncError, HealthError, LockBusy,
                           PermanentError, SourceError, SpecError)
from shared.locks import Lock, Locks, unit_id
from shared.logs import bind, get_logger
from shared.redisconn import RedisError, connect
from shared.settings import Settings
from shared.spec import Application, Cluster, Fleet, load_fleet
from shared.status import StatusStore, UnitStatus, now_iso
from workers.gitsource import SourceCache
from workers.render import render_cached
from workers.render_cache import RenderCache

log = get_logger("fleetsync.pipeline")


@dataclass
class Context:
    """The clients one process uses, built once from settings and reused."""

    settings: Settings
    redis: Any = None                # decoded client, or None when Redis is not used
    cache: RenderCache | None = None
    sources: SourceCache = field(init=False)
    _fleet: tuple[float, Fleet] | None = field(default=None, init=False)
    _kubes: dict[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.sources = SourceCache(self.settings.cache_dir / "git")

    @classmethod
    def connect(cls, settings: Settings, use_redis: bool = True) -> "Context":
        if not use_redis:
            return cls(settings)
        client = connect(settings.redis_url)
        cache = RenderCache(connect(settings.redis_url, decode=False), settings.render_cache_ttl)
        return cls(settings, client, cache)

    @cached_property
    def status(self) -> StatusStore | None:
        return StatusStore(self.redis, self.settings.history_size) if self.redis else None

    @cached_property
    def locks(self) -> Locks | None:
        return Locks(self.redis, self.settings.lock_ttl) if self.redis else None

    def fleet(self) -> Fleet:
        """The fleet spec, re-read when the file changes."""
        path = self.settings.fleet_path
        if not path:
            raise SpecError(["no fleet spec: set FLEETSYNC_FLEET or pass -f FILE"])
        try:
            mtime = Path(path).stat().st_mtime
        except OSError as exc:
            raise SpecError([f"{path}: cannot read the fleet spec: {exc.strerror}"]) from exc
        if self._fleet is None or self._fleet[0] != mtime:
            self._fleet = (mtime, load_fleet(path))
        return self._fleet[1]

    def kube(self, cluster: Cluster) -> Any:
        from workers.apply.kube import Kube

        key = f"{cluster.name}|{cluster.kubeconfig}|{cluster.context}"
        if key not in self._kubes:
            self._kubes[key] = Kube.from_kubeconfig(cluster.kubeconfig, cluster.context,
                                                    name=cluster.name)
        return self._kubes[key]


def unit_spec_hash(fleet: Fleet, app: Application, cluster: Cluster) -> str:
    """What, besides the revision, decides the outcome of a sync: the app, cluster and source spec."""
    payload = [asdict(app), asdict(cluster), asdict(fleet.sources[app.source])]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve(fleet: Fleet, app_name: str, cluster_name: str) -> tuple[Application, Cluster]:
    app = fleet.applications.get(app_name)
    if app is None:
        raise PermanentError(f"no application named {app_name!r} in {fleet.path}")
    cluster = fleet.clusters.get(cluster_name)
    if cluster is None:
        raise PermanentError(f"no cluster named {cluster_name!r} in {fleet.path}")
    if not app.clusters.matches(cluster):
        raise PermanentError(f"application {app_name!r} does not target cluster {cluster_name!r}")
    return app, cluster


# --- fetch ---------------------------------------------------------------------

def fetch(ctx: Context, source_name: str) -> str:
    """Fetch ``source_name`` now and record its revision fleet-wide."""
    fleet = ctx.fleet()
    source = fleet.sources.get(source_name)
    if source is None:
        raise PermanentError(f"no source named {source_name!r} in {fleet.path}")
    started = time.monotonic()
    revision = ctx.sources.fetch(source)
    metrics.source_fetch_duration.labels(source_name).observe(time.monotonic() - started)
    if ctx.status:
        ctx.status.set_source_revision(source_name, revision, time.time())
    log.info("source fetched", source=source_name, revision=revision,
             seconds=round(time.monotonic() - started, 3))
    return revision


def clusters_using(fleet: Fleet, source_name: str) -> list[str]:
    """Clusters with at least one unsuspended application of ``source_name``."""
    return [c.name for c in fleet.clusters.values()
            if any(a.source == source_name and not a.suspend for a in fleet.applications_for(c))]


def current_revision(ctx: Context, source_name: str) -> str:
    """The source's revision, fetched at most once per interval fleet-wide."""
    source = ctx.fleet().sources[source_name]
    known = ctx.status.source_revision(source_name) if ctx.status else None
    if known and time.time() - known[1] < source.interval:
        return known[0]
    if known and ctx.status and not ctx.status.claim_fetch(source_name, source.interval):
        return known[0]            # another worker is fetching it right now
    return fetch(ctx, source_name)


# --- render --------------------------------------------------------------------

def render(ctx: Context, app_name: str, cluster_name: str, revision: str) -> dict[str, Any]:
    """Render one sync unit at ``revision``; the objects go to the cache under the key."""
    fleet = ctx.fleet()
    app, cluster = resolve(fleet, app_name, cluster_name)
    source = fleet.sources[app.source]
    started = time.monotonic()
    tree = _checkout(ctx, source, revision)
    objects, key, hit = render_cached(app, cluster, tree, ctx.cache, revision, source.name)
    metrics.reconcile_duration.labels("render").observe(time.monotonic() - started)
    if ctx.redis is not None:
        ctx.redis.set(_render_memo(fleet, app, cluster, revision), key,
                      ex=int(ctx.settings.render_cache_ttl))
    return {"app": app_name, "cluster": cluster_name, "revision": revision, "render_key": key,
            "objects": len(objects), "cache_hit": hit, "_objects": objects}


def known_render(ctx: Context, app_name: str, cluster_name: str, revision: str) -> str | None:
    """The render key of this unit at this revision and spec, when it is still cached:
    a reconcile then goes straight to apply (render is a pure function of these)."""
    if ctx.redis is None or ctx.cache is None:
        return None
    fleet = ctx.fleet()
    app, cluster = resolve(fleet, app_name, cluster_name)
    key = ctx.redis.get(_render_memo(fleet, app, cluster, revision))
    return key if key and ctx.cache.exists(key) else None


def _render_memo(fleet: Fleet, app: Application, cluster: Cluster, revision: str) -> str:
    return (f"fleetsync:rendered:{unit_id(app.name, cluster.name)}:{revision}:"
            f"{unit_spec_hash(fleet, app, cluster)}")


def _checkout(ctx: Context, source: Any, revision: str) -> Path:
    try:
        return ctx.sources.checkout(source, revision)
    except SourceError:
        ctx.sources.fetch(source)          # this host's mirror may not have it yet
        return ctx.sources.checkout(source, revision)


# --- apply ---------------------------------------------------------------------

@dataclass
class ApplyRequest:
    app: str
    cluster: str
    revision: str
    render_key: str
    trigger: str = "beat"
    task_id: str = ""
    requested_at: float | None = None
    objects: list[dict] | None = None       # given in-process; else read from the cache


def apply(ctx: Context, req: ApplyRequest) -> dict[str, Any]:
    """Make the cluster match the render, under the unit's lock; record the outcome."""
    fleet = ctx.fleet()
    app, cluster = resolve(fleet, req.app, req.cluster)
    bind(app=req.app, cluster=req.cluster, revision=req.revision, stage="apply")
    if app.suspend:
        return _record_suspended(ctx, req)
    try:
        _check_dependencies(ctx, fleet, app, cluster)
    except DependencyNotReady as exc:
        _waiting(ctx, req, exc)
        raise
    spec_hash = unit_spec_hash(fleet, app, cluster)
    skipped = _skip_known_failure(ctx, req, spec_hash)
    if skipped:
        return skipped
    try:
        lock = _acquire(ctx, req)
    except LockBusy as exc:
        return {"app": req.app, "cluster": req.cluster, "revision": req.revision,
                "coalesced": True, "message": exc.message}
    started_at = time.time()
    try:
        with ctx.locks.renewing(lock) if ctx.locks and lock else nullcontext():
            result = _apply_locked(ctx, req, app, cluster, lock, started_at, spec_hash)
    finally:
        rerun = ctx.locks.release(lock) if ctx.locks and lock else False
        if rerun:          # the coalesced requests' run: let it queue afresh
            started(ctx, req.app, req.cluster)
    result["rerun"] = rerun
    return result


def _apply_locked(ctx: Context, req: ApplyRequest, app: Application, cluster: Cluster,
                  lock: Lock | None, started_at: float, spec_hash: str) -> dict[str, Any]:
    from workers.apply.engine import apply_unit

    token = lock.token if lock else time.time_ns() // 1000
    try:
        objects = req.objects if req.objects is not None else _cached_objects(ctx, req)
        result = apply_unit(ctx.kube(cluster), app=app, objects=objects,
                            revision=req.revision, token=token)
    except HealthError as exc:        # health can still come: look again next tick
        _record_failure(ctx, req, exc, started_at, "")
        raise
    except PermanentError as exc:
        _record_failure(ctx, req, exc, started_at, f"{req.revision}:{spec_hash}")
        raise
    except FleetsyncError as exc:
        _record_failure(ctx, req, exc, started_at, "")
        raise
    summary = result.to_dict()
    phase = "Ready" if summary.get("healthy", True) or not app.wait else "Progressing"
    metrics.record_apply(summary.get("counts", {}), summary.get("drift_corrections", 0))
    _record(ctx, req, phase, _message(summary), summary, started_at, "")
    metrics.reconcile_duration.labels("apply").observe(time.time() - started_at)
    return {"app": req.app, "cluster": req.cluster, "revision": req.revision, "phase": phase,
            **summary}


def _cached_objects(ctx: Context, req: ApplyRequest) -> list[dict]:
    objects = ctx.cache.get(req.render_key) if ctx.cache else None
    if objects is None:       # expired or Redis flushed: render again at the same revision
        objects = render(ctx, req.app, req.cluster, req.revision)["_objects"]
    return objects


def enqueue_once(ctx: Context, app_name: str, cluster: str, task_id: str) -> str:
    """The apply task id serving this request: ours, or the run already queued."""
    return ctx.locks.enqueue_once(unit_id(app_name, cluster), task_id) if ctx.locks else task_id


def started(ctx: Context, app_name: str, cluster: str) -> None:
    if ctx.locks:
        ctx.locks.started(unit_id(app_name, cluster))


def _acquire(ctx: Context, req: ApplyRequest) -> Lock | None:
    if not ctx.locks:
        return None
    lock = ctx.locks.acquire_or_coalesce(unit_id(req.app, req.cluster))
    ctx.locks.started(unit_id(req.app, req.cluster))   # later requests queue a new run
    if req.requested_at:
        metrics.lock_wait.observe(max(0.0, time.time() - req.requested_at))
    return lock


def _check_dependencies(ctx: Context, fleet: Fleet, app: Application, cluster: Cluster) -> None:
    if not app.depends_on or not ctx.status:
        return
    waiting = [dep for dep in app.depends_on
               if dep in fleet.applications and fleet.applications[dep].clusters.matches(cluster)
               and ctx.status.get_status(dep, cluster.name).phase != "Ready"]
    if waiting:
        raise DependencyNotReady(f"waiting for {', '.join(waiting)} to be Ready",
                                 unit=unit_id(app.name, cluster.name))


def _waiting(ctx: Context, req: ApplyRequest, exc: DependencyNotReady) -> None:
    """Visible in ``status`` while it waits; history records syncs, not waits."""
    if ctx.status:
        ctx.status.set_status(UnitStatus(req.app, req.cluster, "Progressing", req.revision,
                                         exc.message, now_iso(), exc.reason))


def _skip_known_failure(ctx: Context, req: ApplyRequest, spec_hash: str) -> dict | None:
    """A permanent failure is not retried by beat until the revision or the spec changes."""
    if req.trigger != "beat" or not ctx.status:
        return None
    status = ctx.status.get_status(req.app, req.cluster)
    if status.phase == "Failed" and status.failed_key == f"{req.revision}:{spec_hash}":
        return {"app": req.app, "cluster": req.cluster, "revision": req.revision,
                "phase": "Failed", "skipped": "failed permanently at this revision and spec"}
    return None


def _message(summary: dict[str, Any]) -> str:
    counts = summary.get("counts", {})
    parts = [f"{n} {action}" for action, n in counts.items() if n]
    return ", ".join(parts) or "nothing to do"


def _record(ctx: Context, req: ApplyRequest, phase: str, message: str, summary: dict,
            started_at: float, failed_key: str, reason: str = "") -> None:
    if not ctx.status:
        return
    finished = time.time()
    try:
        ctx.status.set_status(UnitStatus(req.app, req.cluster, phase, req.revision, message,
                                         now_iso(finished), reason, summary.get("counts"),
                                         failed_key))
        ctx.status.add_history(req.app, req.cluster, {
            "revision": req.revision, "trigger": req.trigger, "result": phase,
            "message": message, "changes": summary.get("counts", {}),
            "requests": summary.get("requests"), "writes": summary.get("writes"),
            "lock_wait_s": round(started_at - req.requested_at, 3) if req.requested_at else None,
            "started_at": now_iso(started_at), "finished_at": now_iso(finished),
            "task_id": req.task_id})
    except RedisError as exc:       # status is a cache: never fail a sync for it
        log.warning("status not recorded", error=str(exc))


def _record_failure(ctx: Context, req: ApplyRequest, exc: FleetsyncError, started_at: float,
                    failed_key: str) -> None:
    metrics.task_failures.labels("apply", exc.reason).inc()
    phase = "Failed" if isinstance(exc, PermanentError) else "Progressing"
    _record(ctx, req, phase, exc.message, {}, started_at, failed_key, exc.reason)


def _record_suspended(ctx: Context, req: ApplyRequest) -> dict[str, Any]:
    now = time.time()
    _record(ctx, req, "Suspended", "suspended in the fleet spec", {}, now, "")
    return {"app": req.app, "cluster": req.cluster, "phase": "Suspended"}


# --- all three, in this process --------------------------------------------------

def sync_unit(ctx: Context, app_name: str, cluster_name: str, trigger: str = "cli",
              progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Fetch, render and apply one unit here (``fleetsync sync --local``)."""
    fleet = ctx.fleet()
    app, _ = resolve(fleet, app_name, cluster_name)
    revision = fetch(ctx, app.source)
    progress(f"fetched {app.source} at {revision[:12]}")
    rendered = render(ctx, app_name, cluster_name, revision)
    progress(f"rendered {rendered['objects']} object(s)")
    req = ApplyRequest(app_name, cluster_name, revision, rendered["render_key"], trigger,
                       objects=rendered["_objects"])
    return apply(ctx, req)


def record_stage_failure(ctx: Context, app_name: str, cluster: str, revision: str,
                         exc: FleetsyncError, trigger: str, stage: str) -> None:
    """A fetch or render failure is the unit's status too: ``Failed`` with the reason."""
    metrics.task_failures.labels(stage, exc.reason).inc()
    req = ApplyRequest(app_name, cluster, revision, "", trigger)
    phase = "Failed" if isinstance(exc, PermanentError) else "Progressing"
    _record(ctx, req, phase, str(exc), {}, time.time(), "", exc.reason)


def forget_removed(ctx: Context, cluster: str, apps: set[str]) -> None:
    """Drop status of units that the spec no longer has on ``cluster``."""
    if not ctx.status:
        return
    for status in ctx.status.all_statuses():
        if status.cluster == cluster and status.app not in apps:
            ctx.status.forget(status.app, cluster)
