"""The Celery app of scheduler-side processes (beat, Flower, the client): it sends by task name and loads no worker code."""

from __future__ import annotations

from shared.celery_app import make_app
from shared.logs import configure
from shared.settings import from_env

settings = from_env()
configure(settings.log_level)
app = make_app(settings)
app.conf.beat_scheduler = "scheduler.beat:FleetScheduler"
