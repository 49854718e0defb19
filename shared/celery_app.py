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
from kombu.exceptions import OperationalError
from shared.state.redisconn import RedisError

from shared import tasks_api
from shared.errors import TransientError
from shared.state.redis_url import celery_config
from shared.settings import Settings

class _Router:
    """Celery's router hook over the pure ``tasks_api.route``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, name: str, args: Any, kwargs: Any, options: Any, task: Any = None,
                 **_: Any) -> dict[str, str] | None:
        queue = tasks_api.route(name, args or (), kwargs or {},
                                queue_per_cluster=self.settings.queue_per_cluster)
        return {"queue": queue} if queue else None


def make_app(settings: Settings, include: Iterable[str] = ()) -> Celery:
    """The app on ``settings.redis_url``: one Redis, or the primary that Sentinel names
    (``shared.state.redis_url``: broker and result backend both follow a failover)."""
    redis_conf = celery_config(settings.redis_url)
    transport = {**redis_conf.get("broker_transport_options", {}),
                 "visibility_timeout": settings.visibility_timeout}
    broker_transport = {**transport, **tasks_api.unacked_keys(settings.worker_cluster)}
    app = Celery("fleetsync", broker=redis_conf["broker_url"], backend=redis_conf["result_backend"],
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
        broker_transport_options=broker_transport,
        result_backend_transport_options=dict(transport),
        broker_connection_retry_on_startup=True,
        # a Redis restart is a blip: keep publishing (sends, retries) for about 30 s
        task_publish_retry_policy={"max_retries": 12, "interval_start": 0.5,
                                   "interval_step": 0.5, "interval_max": 5},
        result_expires=3600,
        result_extended=True,
        task_track_started=False,          # Flower learns "started" from events
        # Flower's row of a task begins with the worker's task-received event (it carries
        # the argsrepr); a task-sent event per publish cost the sender a second PUBLISH
        task_send_sent_event=False,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        task_default_queue="reconcile",
        task_default_exchange="reconcile",
        task_default_routing_key="reconcile",
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q)
                     for q in tasks_api.STAGE_QUEUES],
        task_create_missing_queues=True,
        task_routes=(_Router(settings),),
        enable_utc=True,
        timezone="UTC",
    )
    app.conf.fleetsync_settings = settings
    return app


def send(app: Celery, name: str, args: list[Any] | None = None,
         kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
    """Send task ``name`` by name, with the readable form of its arguments for Flower.
    A broker that stays away past the publish retries, or refuses the message (a
    read-only replica, out of memory, an ACL), is a ``TransientError``."""
    try:
        return app.send_task(name, args=args or [], kwargs=kwargs or {},
                             argsrepr=tasks_api.describe(name, args or [], kwargs),
                             kwargsrepr=tasks_api.describe_kwargs(kwargs), **options)
    except (OperationalError, RedisError) as exc:
        raise TransientError(f"broker: {name} not sent: {type(exc).__name__}: {exc}") from exc
