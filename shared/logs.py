"""Structured logging: every line, ours or Celery's, is one JSON object.

structlog renders our events; the standard library's records (Celery, kombu,
urllib3) go through the same processors via ``ProcessorFormatter``. Context
(task id, cluster, app, revision, stage) is bound with contextvars by the
Celery signal handlers and merged into every line. Secrets never reach a log:
values under keys that look like credentials are masked.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_SECRET_HINTS = ("password", "token", "secret", "authorization", "credential")


def _mask_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if any(hint in key.lower() for hint in _SECRET_HINTS):
            event[key] = "***"
    return event


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
        structlog.processors.format_exc_info,
    ]


def configure(level: str = "INFO", stream: Any = None) -> None:
    """Route structlog and the standard library to one JSON handler on ``stream``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer()],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)          # Python warnings become JSON lines too
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def bind(**values: Any) -> None:
    structlog.contextvars.bind_contextvars(**values)


def clear() -> None:
    structlog.contextvars.clear_contextvars()
