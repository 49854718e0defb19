"""Enqueue syncs from scripts: the Python API behind ``fleetsync sync``.

    from scheduler.client import sync
    sync("platform", cluster="production", wait=True, timeout=300)

It sends ``fleetsync.sync`` by name (no worker code is imported); with
``wait=True`` it also waits for each unit's apply task and returns their results.
"""

from __future__ import annotations

import time
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout

from shared.celery_app import make_app
from shared.settings import Settings, from_env


class Client:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or from_env()
        self.app = make_app(self.settings)

    def sync(self, app: str, cluster: str | None = None, *, wait: bool = False,
             timeout: float = 300.0, trigger: str = "api") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        sent = self.app.send_task("fleetsync.sync", args=[app, cluster], kwargs={"trigger": trigger})
        if not wait:
            return {"task_id": sent.id, "app": app, "cluster": cluster}
        plan = sent.get(timeout=timeout, propagate=True)
        units = [self._wait_unit(unit, deadline) for unit in plan.get("units", [])]
        ok = all(u.get("state") == "SUCCESS" and u.get("phase") in ("Ready", None) or
                 u.get("coalesced") for u in units)
        return {"task_id": sent.id, "app": app, "cluster": cluster, "ok": ok, "units": units}

    def _wait_unit(self, unit: dict[str, Any], deadline: float) -> dict[str, Any]:
        if "apply_task_id" not in unit:
            return {**unit, "state": "FAILURE", "phase": "Failed"}
        result = self.app.AsyncResult(unit["apply_task_id"])
        try:
            value = result.get(timeout=max(0.1, deadline - time.monotonic()), propagate=False)
        except CeleryTimeout:
            return {**unit, "state": "TIMEOUT", "phase": "Unknown",
                    "message": "still running when the timeout ran out"}
        if result.state != "SUCCESS":
            return {**unit, "state": result.state, "phase": "Failed", "message": str(value)}
        return {**unit, "state": "SUCCESS", **(value or {})}

    def close(self) -> None:
        self.app.close()


def sync(app: str, cluster: str | None = None, wait: bool = False,
         timeout: float = 300.0) -> dict[str, Any]:
    """Enqueue a sync of ``app`` (on ``cluster``, or on every cluster it targets)."""
    client = Client()
    try:
        return client.sync(app, cluster, wait=wait, timeout=timeout)
    finally:
        client.close()
