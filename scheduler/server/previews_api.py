"""``/api/v1/previews``: ask for a preview of a candidate revision, and read its result.

    POST /api/v1/previews  {"source": S, "ref": REF and/or "revision": SHA, "base": REF,
                            "apps": [A, ...], "clusterSelector": {"matchLabels": {K: V}}}
                           -> 202 {"id", "url"}  (the token's scope ``preview``)
    GET  /api/v1/previews/<id>   the record: meta, done/total, summary, costs and ``units``
                                 (the list ``fleetsync preview -o json`` prints); 404 unknown
    GET  /api/v1/previews        the newest first, without units

A body is checked field by field and refused with a 400 naming the first field
that is wrong; an unknown source or application is a 400 as well (it is the
body that is wrong). A token limited to some applications (``apps=``) must
name its applications in ``apps``, all of them its own. A preview writes
nothing to any cluster and changes no unit's status; the workers fill it
(``shared/state/previews.py``).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from scheduler import previews as runs
from scheduler.server import bodies
from scheduler.server.access import caller
from scheduler.server.backend import Backend
from shared.state import previews

_ID = re.compile(r"[0-9a-f]{1,64}")
_SHA = re.compile(r"[0-9a-f]{7,64}")


def check_body(body: dict[str, Any], fleet: Any) -> str:
    """Why the body cannot start a preview (naming the field), or "" (pure)."""
    allowed = ("source", "ref", "revision", "base", "apps", "clusterSelector")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        return f"{unknown[0]}: not a field of a preview request (fields: {', '.join(allowed)})"
    source = body.get("source")
    if not isinstance(source, str) or not source:
        return "source: give the name of a source of the fleet spec"
    if fleet is None:
        return "the server has no valid fleet spec"
    if source not in fleet.sources:
        return f"source: no source named {source!r} in the fleet spec"
    for key in ("ref", "revision", "base"):
        if key in body and not isinstance(body[key], str):
            return f"{key}: must be a string"
    if not body.get("ref") and not body.get("revision"):
        return "ref: give ref (a branch, tag or commit) or revision (a commit SHA)"
    if body.get("revision") and not _SHA.fullmatch(body["revision"]):
        return "revision: must be a commit SHA (hexadecimal, 7 to 64 characters)"
    return _apps(body.get("apps", []), fleet) or _selector(body.get("clusterSelector"))


def _apps(apps: Any, fleet: Any) -> str:
    if not isinstance(apps, list) or not all(isinstance(a, str) for a in apps):
        return "apps: must be a list of application names"
    missing = [a for a in apps if a not in fleet.applications]
    return f"apps: no application named {missing[0]!r} in the fleet spec" if missing else ""


def _selector(selector: Any) -> str:
    if selector is None:
        return ""
    if not isinstance(selector, dict) or set(selector) != {"matchLabels"}:
        return "clusterSelector: must be {matchLabels: {KEY: VALUE, ...}}"
    labels = selector["matchLabels"]
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in labels.items()):
        return "clusterSelector.matchLabels: must map label names to string values"
    return ""


def with_costs(client: Any, pid: str) -> dict[str, Any] | None:
    """The record, and what its parts asked of the clusters (requests, dry-runs, writes)."""
    record = previews.load(client, pid)
    if record is not None:
        record["costs"] = previews.costs(client, pid)
    return record


class PreviewsApi:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def create(self, request: Request) -> JSONResponse:
        body = await bodies.json_object(request)
        if isinstance(body, JSONResponse):
            return body
        fleet = await run_in_threadpool(self.backend.fleet)
        problem = check_body(body, fleet)
        if problem:
            return JSONResponse({"error": problem}, 400)
        who = caller(request)
        if who.apps is not None:
            apps = body.get("apps") or []
            refused = "" if apps else (f"token {who.name} may act on some applications only: "
                                       "name them in apps")
            refused = refused or next((who.refusal("preview", a) for a in apps
                                       if who.refusal("preview", a)), "")
            if refused:
                return JSONResponse({"error": refused}, 403)
        try:
            pid = await run_in_threadpool(self._start, body, who.name)
        except runs.PreviewRequestError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        except Exception as exc:                # the broker or Redis
            return JSONResponse({"error": f"could not start the preview: {exc}"}, 503)
        return JSONResponse({"api": "v1", "id": pid,
                             "url": f"{self.backend.server.public_url}/previews/{pid}"}, 202)

    def _start(self, body: dict[str, Any], by: str) -> str:
        return str(runs.start(self.backend.celery(), self.backend.redis, source=body["source"],
                              ref=body.get("ref", ""), revision=body.get("revision", ""),
                              base=body.get("base", ""), apps=tuple(body.get("apps") or ()),
                              selector=(body.get("clusterSelector") or {}).get("matchLabels"),
                              requested_by=f"api:{by}"))

    async def one(self, request: Request) -> JSONResponse:
        pid = request.path_params["preview"]
        record = await run_in_threadpool(with_costs, self.backend.redis, pid) \
            if _ID.fullmatch(pid) else None
        if record is None:
            return JSONResponse({"error": "no such preview"}, 404)
        return JSONResponse({"api": "v1", **record})

    async def recent(self, request: Request) -> JSONResponse:
        found = await run_in_threadpool(previews.recent, self.backend.redis)
        return JSONResponse({"api": "v1", "previews": found})
