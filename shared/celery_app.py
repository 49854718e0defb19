"""The Celery application both sides share: broker, serializer, queues, routes.

Beat, the CLI and scripts use this app to send tasks by name; workers build the
same app with ``include=["workers.tasks"]``. Settings flow in as an argument.

Queues: ``reconcile`` (fan-out and ``sync``), ``fetch``, ``render``, ``apply``;
in pull mode each cluster's apply work goes to ``apply.<cluster>`` so that a
worker inside that cluster can consume only its own.
"""

from __future__ import annotations

from typing import Any, Iterable

from celery import Celery
from kombu import Exchange, Queue

from shared.settings import Settings

TASK_QUEUES = {
    "fleetsync.reconcile_cluster": "reconcile",
    "fleetsync.sync": "reconcile",
    "fleetsync.fetch_source": "fetch",
    "fleetsync.render": "render",
    "fleetsync.apply": "apply",
    "fleetsync.ping": "reconcile",
}
STAGE_QUEUES = ("reconcile", "fetch", "render", "apply")


def apply_queue(cluster: str, settings: Settings) -> str:
    return f"apply.{cluster}" if settings.queue_per_cluster else "apply"


def route_for(name: str, args: Iterable[Any], settings: Settings) -> str | None:
    """Pure routing decision: the queue for task ``name`` called with ``args``."""
    queue = TASK_QUEUES.get(name)
    if name == "fleetsync.apply":
        args = list(args)
        if len(args) >= 2:
            return apply_queue(str(args[1]), settings)
    return queue


class _Router:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, name: str, args: Any, kwargs: Any, options: Any, task: Any = None,
                 **_: Any) -> dict[str, str] | None:
        cluster_args = list(args or ())
        if not cluster_args and kwargs and "cluster" in kwargs:
            cluster_args = [kwargs.get("app"), kwargs["cluster"]]
        queue = route_for(name, cluster_args, self.settings)
        return {"queue": queue} if queue else None


def make_app(settings: Settings, include: Iterable[str] = ()) -> Celery:
    app = Celery("fleetsync", broker=settings.redis_url, backend=settings.redis_url,
                 include=list(include))
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=settings.task_time_limit - 30,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        result_extended=True,
        task_track_started=False,          # Flower learns "started" from events
        task_send_sent_event=True,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        task_default_queue="reconcile",
        task_default_exchange="reconcile",
        task_default_routing_key="reconcile",
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in STAGE_QUEUES],
        task_create_missing_queues=True,
        task_routes=(_Router(settings),),
        enable_utc=True,
        timezone="UTC",
    )
    app.conf.fleetsync_settings = settings
    return app
