"""The public task contract: task names, their arguments, queues, routing, results.

Flower's REST API, operators' scripts, beat, the client and the workers all
speak through these names; this module is their one home. Arguments are JSON
(strings, numbers, lists, dicts) and positional arguments keep their order:

    fleetsync.sync(app, cluster=None)                 public: CLI, scripts, Flower
    fleetsync.reconcile_cluster(cluster)              beat, every cluster.interval
    fleetsync.fetch_source(source)                    beat, every source.interval
    fleetsync.render(app, cluster, revision)          internal: one stage of a run
    fleetsync.apply(app, cluster, render_key)         internal: one stage of a run
    fleetsync.check_health(app, cluster, run_id)      internal: a run's health follow-up
    fleetsync.remove(app, cluster)                    internal: an application left the spec
    fleetsync.preview(preview_id, source, ref)        public: a preview created in Redis
    fleetsync.preview_cluster(preview_id, cluster)    internal: one cluster's part of a preview
    fleetsync.scan_images(policies, force=False)      beat, CLI: image policies, then their commits
    fleetsync.ping(payload=None)                      health check

Internal stages also carry keyword arguments (``run_id``, ``trigger``,
``requested_at``, ``revision``); a sync *run* (shared/protocol.py) is named by
``run_id``, not by a Celery task id, because one run may span several tasks
(render, apply, retries).

Every stage that finishes a run returns one result shape, ``unit_result``:
phase and a one-line summary first (what Flower shows), details after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from shared.state.keys import unit_id

SYNC = "fleetsync.sync"
RECONCILE_CLUSTER = "fleetsync.reconcile_cluster"
FETCH_SOURCE = "fleetsync.fetch_source"
RENDER = "fleetsync.render"
APPLY = "fleetsync.apply"
CHECK_HEALTH = "fleetsync.check_health"
REMOVE = "fleetsync.remove"
PING = "fleetsync.ping"
PREVIEW = "fleetsync.preview"
PREVIEW_CLUSTER = "fleetsync.preview_cluster"
SCAN_IMAGES = "fleetsync.scan_images"

STAGE_QUEUES = ("reconcile", "fetch", "render", "apply")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    args: tuple[str, ...]           # positional arguments, in order
    kwargs: tuple[str, ...]         # optional keyword arguments
    queue: str                      # "apply" becomes apply.<cluster> in pull mode
    public: bool                    # may be enqueued from outside the workers

    def named(self, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
        """The call's arguments by name (positional ones matched to their names)."""
        found = dict(zip(self.args, args or ()))
        found.update({k: v for k, v in (kwargs or {}).items() if k in self.args + self.kwargs})
        return found


_STAGE_KW = ("run_id", "trigger", "requested_at")
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec(SYNC, ("app", "cluster"), ("trigger", "reason", "by"), "reconcile", True),
    TaskSpec(RECONCILE_CLUSTER, ("cluster",), ("trigger",), "reconcile", False),
    TaskSpec(FETCH_SOURCE, ("source",), (), "fetch", False),
    TaskSpec(RENDER, ("app", "cluster", "revision"), _STAGE_KW, "render", False),
    TaskSpec(APPLY, ("app", "cluster", "render_key"), _STAGE_KW + ("revision",), "apply", False),
    TaskSpec(CHECK_HEALTH, ("app", "cluster", "run_id"),
             ("revision", "deadline", "objects", "round", "trigger"), "apply", False),
    TaskSpec(REMOVE, ("app", "cluster"), ("mode",), "apply", False),
    TaskSpec(PING, ("payload",), (), "reconcile", True),
    TaskSpec(PREVIEW, ("preview_id", "source", "ref"), (), "reconcile", True),
    TaskSpec(PREVIEW_CLUSTER, ("preview_id", "cluster"),
             ("source", "ref", "units", "added", "removed"), "apply", False),
    TaskSpec(SCAN_IMAGES, ("policies",), ("force", "sources", "trigger"), "fetch", True),
)}


def apply_queue(cluster: str, queue_per_cluster: bool) -> str:
    return f"apply.{cluster}" if queue_per_cluster else "apply"


def unacked_keys(cluster: str | None) -> dict[str, str]:
    """kombu's transport options naming where a worker keeps the messages it took and has
    not acknowledged yet. One hash is shared by every queue by default; a pull worker
    (bound to ``cluster``) keeps its own, so that its Redis user needs no access to the
    in-flight messages (run ids, render keys) of any other cluster. Only workers of the
    same cluster restore them after the visibility timeout, and only they consume them."""
    if not cluster:
        return {}
    suffix = f".{apply_queue(cluster, True)}"
    return {"unacked_key": f"unacked{suffix}", "unacked_index_key": f"unacked_index{suffix}",
            "unacked_mutex_key": f"unacked_mutex{suffix}"}


def route(name: str, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, *,
          queue_per_cluster: bool = False) -> str | None:
    """The queue for task ``name`` called with these arguments (pure)."""
    spec = TASKS.get(name)
    if spec is None:
        return None
    if spec.queue == "apply":
        cluster = spec.named(args, kwargs).get("cluster")
        if cluster:
            return apply_queue(str(cluster), queue_per_cluster)
    return spec.queue


def log_fields(name: str, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None
               ) -> dict[str, Any]:
    """Names worth binding to every log line of a task: app, cluster, source, revision."""
    spec = TASKS.get(name)
    if spec is None:
        return {}
    named = spec.named(args, kwargs)
    return {k: v for k, v in named.items()
            if k in ("app", "cluster", "source", "revision", "run_id", "trigger", "preview_id",
                     "ref") and v}


# -- results ------------------------------------------------------------------------

def unit_result(app: str, cluster: str, phase: str, summary: str, *, run_id: str = "",
                revision: str = "", details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The one result shape of a run's outcome: phase and summary first."""
    out: dict[str, Any] = {"phase": phase, "summary": summary, "unit": unit_id(app, cluster),
                           "app": app, "cluster": cluster, "revision": revision,
                           "run_id": run_id}
    for key, value in (details or {}).items():
        out.setdefault(key, value)
    return out


def request_result(app: str, cluster: str, run_id: str, *, joined: bool, revision: str = "",
                   error: str = "") -> dict[str, Any]:
    """What a request for one unit led to: a run of its own, or one it joined."""
    out: dict[str, Any] = {"unit": unit_id(app, cluster), "app": app, "cluster": cluster,
                           "run_id": run_id, "joined": joined, "revision": revision}
    if error:
        out["error"] = error
    return out


# -- what people read (Flower's task list, logs) ---------------------------------------

def describe(name: str, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None) -> str:
    """A task call as a person reads it: ``platform@staging rev 81a51c7 (beat)``.

    Celery sends it as ``argsrepr``, so Flower's list shows it and its search
    (``args:staging``) finds a unit's tasks; the JSON arguments stay the API.
    """
    spec = TASKS.get(name)
    if spec is None:
        return ", ".join(map(repr, args))
    named = spec.named(args, kwargs)
    trigger = (kwargs or {}).get("trigger")
    tail = f" ({trigger})" if trigger else ""
    if "app" in spec.args:
        unit = f"{named.get('app')}@{named.get('cluster') or 'every cluster'}"
        revision = named.get("revision") or (kwargs or {}).get("revision")
        rev = f" rev {str(revision)[:7]}" if revision else ""
        return f"{unit}{rev}{tail}"
    if "preview_id" in spec.args:
        where = f" cluster {named['cluster']}" if named.get("cluster") else ""
        ref = named.get("ref") or (kwargs or {}).get("ref") or ""
        source = named.get("source") or (kwargs or {}).get("source") or ""
        return f"preview {named.get('preview_id')} of {source}@{ref}{where}"
    if "policies" in spec.args:
        return _describe_scan(named, kwargs or {}, tail)
    if "cluster" in spec.args:
        return f"cluster {named.get('cluster')}{tail}"
    if "source" in spec.args:
        return f"source {named.get('source')}{tail}"
    return ", ".join(map(repr, args))


def _describe_scan(named: Mapping[str, Any], kwargs: Mapping[str, Any], tail: str) -> str:
    """``scan images podinfo, nginx`` (and the sources a beat entry pushes to)."""
    policies = [str(p) for p in named.get("policies") or []]
    sources = [str(s) for s in kwargs.get("sources") or []]
    what = f"scan images {', '.join(policies)}" if policies else "image updates"
    where = f" for {', '.join(sources)}" if sources else ""
    forced = " (forced)" if kwargs.get("force") and not tail else ""
    return f"{what}{where}{forced}{tail}"


def describe_kwargs(kwargs: Mapping[str, Any] | None) -> str:
    """The internal keyword arguments, short: ``run 1a2b3c4d, attempt 2``."""
    kwargs = kwargs or {}
    parts = []
    if kwargs.get("run_id"):
        parts.append(f"run {str(kwargs['run_id'])[:8]}")
    if kwargs.get("attempt"):
        parts.append(f"attempt {kwargs['attempt']}")
    return ", ".join(parts)
