"""The Celery app of scheduler-side processes (beat, Flower, the client): it sends by task name and loads no worker code."""

from __future__ import annotations

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


for _name in tasks_api.TASKS:
    _signature_only(_name)
