"""``/api/v1``: the fleet as JSON, for scripts and for the dashboard's own refresh.

Version 1 is stable: fields are only ever added. Every answer is computed
from one read of the fleet (``fleetview``), so it is as fresh as Redis.

    GET  /api/v1/units[?cluster=&app=&label=k=v,k2=v2]   every unit: phase, revision, age, message
    GET  /api/v1/units/<cluster>/<app>[?limit=N]          one unit, its history, its last drift
    GET  /api/v1/revisions                                per-revision roll-ups of every source
    GET  /api/v1/revisions/<sha or prefix>                the roll-ups of one revision
    GET  /api/v1/sources                                  each source's revision, commit and error
    POST /api/v1/sync  {"app": A, "cluster": C or null, "reason": WHY}
                                                          enqueue fleetsync.sync (202, its task id)

With tokens configured every request needs ``Authorization: Bearer <token>``
(``access.py``) with the scope ``read``, a sync the scope ``sync`` and the
application among the token's. A ``reason`` (a manual sync through a closed
change window) is sent on the task with ``by``, the token's name; every sync
asked here is audited (``scheduler/holds.py``). A POST always needs ``Content-Type: application/json`` and a JSON
object no larger than ``FLEETSYNC_SERVER_MAX_BODY`` nor deeper than 64 levels
(``bodies.py``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from shared import tasks_api
from scheduler.holds import HoldError
from scheduler.links import task_url
from scheduler.server import bodies, fleetview
from scheduler.server.access import permitted
from scheduler.server.backend import Backend
from scheduler.server.holds_api import operator, who

MAX_HISTORY = 200


class FleetSnapshot:
    """The three reads every view starts from, taken together."""

    def __init__(self, backend: Backend, labels: dict[str, str] | None = None) -> None:
        self.fleet = backend.fleet()
        self.now = datetime.now(timezone.utc)
        self.rows = fleetview.rows(self.fleet, backend.statuses(), self.now, labels)
        names = sorted(self.fleet.sources) if self.fleet else []
        names += sorted({r.source for r in self.rows if r.source} - set(names))
        self.sources = backend.sources(names)
        self.spec_problems = backend.spec_problems()

    def rollups(self) -> list[fleetview.Rollup]:
        return fleetview.rollups(self.rows, self.sources)


def snapshot(backend: Backend, request: Request) -> FleetSnapshot:
    return FleetSnapshot(backend, fleetview.parse_labels(request.query_params.get("label", "")))


def unit_detail(backend: Backend, cluster: str, app: str, limit: int) -> dict[str, Any] | None:
    fleet = backend.fleet()
    status, history, known = backend.unit(app, cluster, limit)
    in_spec = bool(fleet and (app, cluster) in set(fleet.units()))
    if not known and not in_spec:
        return None
    labels = dict(fleet.clusters[cluster].labels) if fleet and cluster in fleet.clusters else {}
    source = fleet.applications[app].source if fleet and app in fleet.applications else ""
    row = fleetview.rows(None, [status], datetime.now(timezone.utc))[0] if known else \
        fleetview.Row(app, cluster, "Unknown", message="never synced")
    flower = backend.server.flower_url
    for entry in history:
        entry["flower_url"] = task_url(flower, entry.get("task_id", ""))
    return {**row.to_dict(), "source": source, "labels": labels, "in_spec": in_spec,
            "history": history, "last_drift": fleetview.last_drift(history)}


class Api:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def units(self, request: Request) -> JSONResponse:
        snap = await run_in_threadpool(snapshot, self.backend, request)
        cluster, app = request.query_params.get("cluster"), request.query_params.get("app")
        rows = [r.to_dict() for r in snap.rows
                if (not cluster or r.cluster == cluster) and (not app or r.app == app)]
        return JSONResponse({"api": "v1", "generated_at": snap.now.isoformat(),
                             "counts": fleetview.counts(snap.rows), "units": rows,
                             "spec_problems": snap.spec_problems})

    async def unit(self, request: Request) -> JSONResponse:
        limit = _int(request.query_params.get("limit"), self.backend.server.settings.history_size)
        found = await run_in_threadpool(unit_detail, self.backend,
                                        request.path_params["cluster"],
                                        request.path_params["app"], min(limit, MAX_HISTORY))
        if found is None:
            return JSONResponse({"error": "no such unit"}, 404)
        return JSONResponse({"api": "v1", **found})

    async def revisions(self, request: Request) -> JSONResponse:
        snap = await run_in_threadpool(snapshot, self.backend, request)
        found = snap.rollups()
        wanted = request.path_params.get("revision")
        if wanted is not None:
            found = fleetview.find_rollup(found, wanted)
            if not found:
                return JSONResponse({"error": f"no unit of the fleet is at revision {wanted!r} "
                                              "(give at least 4 characters)"}, 404)
        return JSONResponse({"api": "v1", "revisions": [r.to_dict() for r in found]})

    async def sources(self, request: Request) -> JSONResponse:
        snap = await run_in_threadpool(snapshot, self.backend, request)
        return JSONResponse({"api": "v1", "sources": [
            {"name": r.name, "revision": r.revision, "ref": r.ref, "fetched_at": r.fetched_at,
             "error": r.error, "commit": r.commit if r.commit_revision == r.revision else {}}
            for r in snap.sources.values()]})

    async def sync(self, request: Request) -> JSONResponse:
        body = await bodies.json_object(request)
        if isinstance(body, JSONResponse):
            return body
        app, cluster, reason = body.get("app"), body.get("cluster"), body.get("reason") or ""
        if not isinstance(app, str) or not (cluster is None or isinstance(cluster, str)) \
                or not isinstance(reason, str):
            return JSONResponse({"error": 'give {"app": NAME, "cluster": NAME or null, '
                                          '"reason": TEXT (optional)}'}, 400)
        refused = permitted(request, "sync", app)
        if refused is not None:
            return refused
        problem = await run_in_threadpool(self._unknown, app, cluster)
        if problem:
            return JSONResponse({"error": problem}, 404)
        op, by = operator(self.backend, request), who(self.backend, request, body)
        try:
            task_id = await run_in_threadpool(op.sync, app, cluster, by, reason.strip())
        except HoldError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        return JSONResponse({"api": "v1", "task": tasks_api.SYNC, "id": task_id, "app": app,
                             "cluster": cluster,
                             "flower_url": task_url(self.backend.server.flower_url, task_id)},
                            202)

    def _unknown(self, app: str, cluster: str | None) -> str:
        fleet = self.backend.fleet()
        if fleet is None:
            return "the server has no valid fleet spec"
        if app not in fleet.applications:
            return f"no application named {app!r} in the fleet spec"
        if cluster is not None and (app, cluster) not in set(fleet.units()):
            return f"application {app!r} does not target a cluster named {cluster!r}"
        return ""


def _int(text: str | None, default: int) -> int:
    try:
        return max(1, int(text)) if text else default
    except ValueError:
        return default
