"""``/api/v1`` for operators' holds: rollouts in waves and suspensions (``scheduler/holds.py``).

    GET  /api/v1/rollouts/<app>                                  where the rollout stands
    POST /api/v1/rollouts/<app>/pause|resume|abort  {"by": WHO}  as ``fleetsync rollout ...``
    POST /api/v1/rollouts/<app>/promote  {"wave": N, "by": WHO}  (wave optional: the next)
    POST /api/v1/suspend  {"app": A, "cluster": C or null, "by": WHO}
    POST /api/v1/resume   {"app": A, "cluster": C or null, "by": WHO}

Like ``/api/v1/sync``: the bearer token of ``access.py`` with the scope
``rollout`` (the rollout actions) or ``hold`` (suspend, resume) and the
application among its own; a POST needs ``Content-Type: application/json``.
Who did it is recorded as the token's name; without tokens (loopback) as
``by`` (default ``api``). An impossible request (nothing to promote, not
suspended) is a 409 naming why. ``Operator`` audits every action.
"""

from __future__ import annotations

from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from scheduler.holds import HoldError, Operator
from scheduler.server import bodies
from scheduler.server.access import caller, permitted, via
from scheduler.server.backend import Backend

ACTIONS = ("pause", "resume", "promote", "abort")
MAX_BY = 64


class HoldsApi:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _operator(self, request: Request) -> Operator:
        return operator(self.backend, request)

    def who(self, request: Request, body: dict[str, Any]) -> str:
        return who(self.backend, request, body)

    async def rollout(self, request: Request) -> JSONResponse:
        app = request.path_params["app"]
        return await self._do(lambda: self._operator(request).status(app))

    async def rollout_action(self, request: Request) -> JSONResponse:
        app, action = request.path_params["app"], request.path_params["action"]
        if action not in ACTIONS:
            return JSONResponse({"error": f"no rollout action {action!r} "
                                          f"(one of {', '.join(ACTIONS)})"}, 404)
        refused = permitted(request, "rollout", app)
        if refused is not None:
            return refused
        body = await bodies.json_object(request)
        if isinstance(body, JSONResponse):
            return body
        by, wave = self.who(request, body), body.get("wave")
        if wave is not None and (not isinstance(wave, int) or isinstance(wave, bool)):
            return JSONResponse({"error": 'give "wave" as a number (1-based)'}, 400)

        def act() -> dict[str, Any]:
            op = self._operator(request)
            if action == "pause":
                return op.pause(app, by)
            if action == "resume":
                return op.resume_rollout(app, by)
            if action == "promote":
                return op.promote(app, by, wave)
            return op.abort(app, by)
        return await self._do(act)

    async def suspend(self, request: Request) -> JSONResponse:
        return await self._hold(request, suspend=True)

    async def resume(self, request: Request) -> JSONResponse:
        return await self._hold(request, suspend=False)

    async def _hold(self, request: Request, suspend: bool) -> JSONResponse:
        body = await bodies.json_object(request)
        if isinstance(body, JSONResponse):
            return body
        app, cluster = body.get("app"), body.get("cluster")
        if not isinstance(app, str) or not (cluster is None or isinstance(cluster, str)):
            return JSONResponse({"error": 'give {"app": NAME, "cluster": NAME or null}'}, 400)
        refused = permitted(request, "hold", app)
        if refused is not None:
            return refused
        by, op = self.who(request, body), self._operator(request)
        return await self._do(lambda: (op.suspend if suspend else op.resume)(app, cluster, by))

    async def _do(self, fn: Callable[[], dict[str, Any]]) -> JSONResponse:
        try:
            found = await run_in_threadpool(fn)
        except HoldError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        return JSONResponse({"api": "v1", **found})


def operator(backend: Backend, request: Request) -> Operator:
    """The caller's ``Operator``: audited as coming from the dashboard or the API."""
    return Operator(backend.redis, backend.fleet(), backend.send, via=via(request),
                    history_size=backend.server.settings.history_size)


def who(backend: Backend, request: Request, body: dict[str, Any]) -> str:
    """The name an action is recorded with: the token's, or (no tokens) the body's ``by``."""
    if backend.server.tokens:
        return caller(request).name
    return str(body.get("by") or "api")[:MAX_BY]
