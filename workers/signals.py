"""Cross-cutting work for every task, done once in Celery signal handlers.

Logging is configured when a worker process starts (so Celery's own lines are
JSON too), and every task binds its id, name and arguments' names to the log
context before it runs and clears them after.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from shared import logs
from shared.settings import from_env


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    logs.configure(from_env().log_level)


@signals.task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, args: Any = None,
               kwargs: Any = None, **_: Any) -> None:
    logs.clear()
    logs.bind(task_id=task_id, task=getattr(task, "name", None), **_names(args, kwargs))


@signals.task_postrun.connect
def _unbind_task(**_: Any) -> None:
    logs.clear()


def _names(args: Any, kwargs: Any) -> dict[str, Any]:
    """The cluster/app/source names in a task call, for the log context."""
    found = {k: v for k, v in (kwargs or {}).items() if k in ("app", "cluster", "source", "revision")}
    return found
