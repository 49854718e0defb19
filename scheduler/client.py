"""Enqueue syncs from scripts: the Python API behind ``fleetsync sync``.

    from scheduler.client import sync
    result = sync("platform", cluster="production", wait=True, timeout=300)
    result["ok"]        # True only when every targeted unit ended Ready

It sends ``fleetsync.sync`` by name (no worker code is imported). The task
answers with one *run* per targeted unit: a run of its own, or the queued run
the request joined (it had not started, so it serves this request too). With
``wait=True`` the client follows each run's record in Redis until it ends
(following a run that was superseded to the one that replaced it) and reports
the outcome: phase, revision and message, never a run that began before the
request. A run that ended ``Progressing`` while its workloads roll out is
followed further, through the unit's status, until a health follow-up (its own,
or that of a later run at the same revision) settles it ``Ready`` or
``Degraded``, or a newer revision's outcome replaces it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout

from shared.state import keys
from shared import tasks_api
from shared.celery_app import make_app, send
from shared.protocol import Phase, RunState
from shared.state.redisconn import connect
from shared.settings import Settings, from_env

MAX_HOPS = 20


class Client:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or from_env()
        self.app = make_app(self.settings)

    def sync(self, app: str, cluster: str | None = None, *, wait: bool = False,
             timeout: float = 300.0, trigger: str = "api", poll: float = 0.25,
             reason: str = "", by: str = "") -> dict[str, Any]:
        """Enqueue ``fleetsync.sync``; ``reason`` and ``by`` (who asks) let it through a
        change window that holds a unit and says ``manualSync: true``."""
        deadline = time.monotonic() + timeout
        extra = {k: v for k, v in (("reason", reason), ("by", by)) if v}
        sent = send(self.app, tasks_api.SYNC, [app, cluster], {"trigger": trigger, **extra})
        if not wait:
            return {"task_id": sent.id, "app": app, "cluster": cluster}
        try:
            plan = sent.get(timeout=timeout, propagate=True)
        except CeleryTimeout:
            return {"task_id": sent.id, "app": app, "cluster": cluster, "ok": False,
                    "units": [{"app": app, "cluster": cluster or "(every cluster)",
                               "phase": Phase.UNKNOWN.value, "timed_out": True,
                               "message": "no worker took the sync request in time "
                                          "(is a worker running on this Redis?)"}]}
        units = self.wait_runs(plan.get("units", []), deadline, poll)
        ok = bool(units) and all(u["phase"] == Phase.READY.value for u in units)
        return {"task_id": sent.id, "app": app, "cluster": cluster, "ok": ok, "units": units}

    def wait_runs(self, requests: list[dict[str, Any]], deadline: float,
                  poll: float = 0.25) -> list[dict[str, Any]]:
        """The outcome of each request's run, waiting until ``deadline`` (monotonic)."""
        outcomes: dict[int, dict[str, Any]] = {}
        while True:
            for i, req in enumerate(requests):
                if i not in outcomes:
                    found = self.outcome(req)
                    if found is not None:
                        outcomes[i] = found
            if len(outcomes) == len(requests) or time.monotonic() >= deadline:
                break
            time.sleep(poll)
        return [outcomes.get(i) or self._still(req) for i, req in enumerate(requests)]

    def outcome(self, req: dict[str, Any]) -> dict[str, Any] | None:
        """The ended run serving ``req``, or None while it has not ended."""
        base = {"app": req.get("app"), "cluster": req.get("cluster"), "run_id": req.get("run_id")}
        if not req.get("run_id"):
            return {**base, "phase": Phase.FAILED.value, "revision": req.get("revision", ""),
                    "message": req.get("error") or "no run was queued"}
        redis = connect(self.settings.redis_url)
        run_id, unit = req["run_id"], keys.unit_id(req.get("app") or "", req.get("cluster") or "")
        for _ in range(MAX_HOPS):
            record = redis.hgetall(keys.run(unit, run_id))
            if not record:
                return {**base, "run_id": run_id, "phase": Phase.UNKNOWN.value, "revision": "",
                        "message": "the run's record is gone (Redis was flushed or it expired)"}
            if record.get("superseded_by"):
                run_id = record["superseded_by"]
                continue
            if record.get("state") != RunState.DONE.value:
                return None
            found = {**base, "run_id": run_id, "phase": record.get("phase", Phase.UNKNOWN.value),
                     "revision": record.get("revision", ""), "message": record.get("summary", ""),
                     "result": json.loads(record.get("result") or "{}")}
            if found["phase"] != Phase.PROGRESSING.value or not record.get("unit"):
                return found
            status = redis.hgetall(keys.status(record["unit"]))
            if status.get("run_id") != run_id and status.get("revision") != found["revision"]:
                return found                    # a newer revision's outcome replaced it
            if status.get("phase") == Phase.PROGRESSING.value:
                return None                     # the rollout goes on: a follow-up looks
            return {**found, "phase": status.get("phase", Phase.UNKNOWN.value),
                    "message": status.get("message", "")}
        return None

    def _still(self, req: dict[str, Any]) -> dict[str, Any]:
        redis = connect(self.settings.redis_url)
        record = redis.hgetall(keys.run(keys.unit_id(req.get("app") or "", req.get("cluster") or ""),
                                        req.get("run_id") or "-"))
        state = record.get("state") or "queued"
        detail = f": {record['summary']}" if record.get("summary") else ""
        if state == RunState.DONE.value and record.get("unit"):      # health not settled
            state = "waiting for health"
            message = redis.hget(keys.status(record["unit"]), "message")
            detail = f": {message}" if message else detail
        return {"app": req.get("app"), "cluster": req.get("cluster"), "run_id": req.get("run_id"),
                "phase": Phase.UNKNOWN.value, "revision": record.get("revision", ""),
                "timed_out": True, "message": f"still {state} when the timeout ran out{detail}"}

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
