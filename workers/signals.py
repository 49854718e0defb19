"""Cross-cutting work for every task, done once in Celery signal handlers.

Logging is configured when a worker process starts (so Celery's own lines are
JSON too), and every task binds its id, name and arguments' names to the log
context before it runs and clears them after.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from shared import logs, tasks_api
from shared.settings import from_env


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    logs.configure(from_env().log_level)


@signals.task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, args: Any = None,
               kwargs: Any = None, **_: Any) -> None:
    logs.clear()
    logs.bind(task_id=task_id, task=getattr(task, "name", None), **_names(task, args, kwargs))


@signals.task_postrun.connect
def _unbind_task(**_: Any) -> None:
    logs.clear()


def _names(task: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    """The app/cluster/source/revision names in a task call, for the log context."""
    name = getattr(task, "name", "") or ""
    return {**tasks_api.log_fields(name, args or (), kwargs or {}),
            "stage": name.removeprefix("fleetsync.")}


@signals.worker_init.connect
def _serve_metrics(**_: Any) -> None:
    settings = from_env()
    if settings.metrics_port:
        from functools import partial

        from shared.state import heartbeat
        from shared import metrics
        from shared.state.redisconn import connect
        from shared.state.status import StatusStore

        store = StatusStore(connect(settings.redis_url))
        # a pull worker reports its own cluster's units: its Redis user may read no other's
        metrics.serve(settings.metrics_port, addr=settings.metrics_addr,
                      statuses=partial(store.all_statuses, settings.worker_cluster),
                      beat_tick=partial(heartbeat.last_tick, store.client))


@signals.worker_process_shutdown.connect
def _process_gone(pid: int | None = None, **_: Any) -> None:
    import os

    from shared import metrics

    metrics.mark_process_dead(pid or os.getpid())
