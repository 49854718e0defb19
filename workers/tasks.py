"""Celery tasks: thin wrappers that take names, call one domain function, return a small dict."""

from __future__ import annotations

import os
import socket

from workers.app import app


@app.task(name="fleetsync.ping")
def ping(payload: dict | None = None) -> dict:
    """Round trip through the broker: proves a worker is consuming."""
    return {"pong": True, "worker": f"{socket.gethostname()}:{os.getpid()}", "echo": payload}
