"""The Celery app of scheduler-side processes (beat, Flower, the client): it sends by task name and loads no worker code.

What these processes may send is a short list: ``fleetsync.sync`` and
``fleetsync.ping`` from anywhere, ``fleetsync.preview`` from anywhere but Flower; beat's ``reconcile_cluster`` and
``fetch_source`` too, except from Flower, whose API is the door most exposed
(``FLEETSYNC_FLOWER_TASKS`` adds names to Flower's list, comma-separated). The
internal stages (render, apply, check_health) are never sent from here: workers
send and sign them (``workers/sealing.py``) and refuse them unsigned anyway.
Flower's ``apply`` and ``async-apply`` answer 404 for a name not on the list,
and its ``send-task`` fails (500, the reason in Flower's log) before anything is
published.
"""

from __future__ import annotations

import os
from typing import Any

from shared import tasks_api
from shared.celery_app import make_app
from shared.logs import configure
from shared.settings import from_env

settings = from_env()
configure(settings.log_level)
app = make_app(settings)
app.conf.beat_scheduler = "scheduler.beat:FleetScheduler"


def _signature_only(name: str):
    """Register ``name`` so that Flower's ``async-apply`` accepts it; the body runs on workers."""

    def stub(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"{name} runs on fleetsync workers; it was enqueued, not run here")

    stub.__name__ = name.rsplit(".", 1)[-1]
    app.task(name=name)(stub)


SCHEDULED = (tasks_api.RECONCILE_CLUSTER, tasks_api.FETCH_SOURCE)


def allowed(process: str, extra: str = "") -> frozenset[str]:
    """The task names this process may send (pure)."""
    public = {name for name, spec in tasks_api.TASKS.items() if spec.public}
    listed = {n.strip() for n in extra.split(",") if n.strip()} & set(tasks_api.TASKS)
    internal = {tasks_api.RENDER, tasks_api.APPLY, tasks_api.CHECK_HEALTH, tasks_api.REMOVE,
                tasks_api.PREVIEW_CLUSTER}
    if process == "flower":          # a preview costs dry-runs on every cluster, a scan
        names = (public - {tasks_api.PREVIEW, tasks_api.SCAN_IMAGES}) | listed   # commits
    else:
        names = public | set(SCHEDULED)
    return frozenset(names - internal)


PROCESS = os.environ.get("FLEETSYNC_PROCESS", "")
ALLOWED = allowed(PROCESS, os.environ.get("FLEETSYNC_FLOWER_TASKS", ""))


class TaskNotAllowed(PermissionError):
    pass


_send_task = app.send_task


def _send_allowed(name: str, *args: Any, **kwargs: Any) -> Any:
    if name not in ALLOWED:
        raise TaskNotAllowed(f"{name} cannot be sent from here; allowed: "
                             f"{', '.join(sorted(ALLOWED))}")
    return _send_task(name, *args, **kwargs)


app.send_task = _send_allowed  # type: ignore[method-assign]


for _name in sorted(ALLOWED):
    _signature_only(_name)
