"""The worker-side Celery app: ``celery -A workers.app worker`` (or ``fleetsync worker``).

Settings come from the environment once, here at the edge; the tasks module is
included so that the worker registers every ``fleetsync.*`` task.
"""

from __future__ import annotations

from shared.celery_app import make_app
from shared.settings import from_env
from workers import broker

broker.use()        # acknowledgements in plain pipelines (no MULTI/EXEC per message)
settings = from_env()
app = make_app(settings, include=["workers.tasks"])
# task events in batches: one PUBLISH per short window, not one per event
app.conf.worker_consumer = "workers.events:BatchingConsumer"

import workers.signals  # noqa: E402,F401  (logging and metrics wiring, once)
import workers.prefork  # noqa: E402,F401  (the pool shares what the main process loaded)
