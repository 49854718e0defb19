"""``/api/v1`` for operators' holds: rollouts in waves and suspensions (``scheduler/holds.py``).

    GET  /api/v1/rollouts/<app>                                  where the rollout stands
    POST /api/v1/rollouts/<app>/pause|resume|abort  {"by": WHO}  as ``fleetsync rollout ...``
    POST /api/v1/rollouts/<app>/promote  {"wave": N, "by": WHO}  (wave optional: the next)
    POST /api/v1/suspend  {"app": A, "cluster": C or null, "by": WHO}
    POST /api/v1/resume   {"app": A, "cluster": C or null, "by": WHO}

Like ``/api/v1/sync``: the bearer token of ``access.py``, and a POST needs
``Content-Type: application/json``. ``by`` is recorded as who did it (default
``api``); an impossible request (nothing to promote, not suspended) is a 409
naming why.
"""

from __future__ import annotations

from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from scheduler.holds import HoldError, Operator
from scheduler.server import bodies
from scheduler.server.backend import Backend

ACTIONS = ("pause", "resume", "promote", "abort")


class HoldsApi:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _operator(self) -> Operator:
        return Operator(self.backend.redis, self.backend.fleet(), self.backend.send)

    async def rollout(self, request: Request) -> JSONResponse:
        app = request.path_params["app"]
        return await self._do(lambda: self._operator().status(app))

    async def rollout_action(self, request: Request) -> JSONResponse:
        app, action = request.path_params["app"], request.path_params["action"]
        if action not in ACTIONS:
            return JSONResponse({"error": f"no rollout action {action!r} "
                                          f"(one of {', '.join(ACTIONS)})"}, 404)
        body = await bodies.json_object(request)
        if isinstance(body, JSONResponse):
            return body
        by, wave = str(body.get("by") or "api"), body.get("wave")
        if wave is not None and (not isinstance(wave, int) or isinstance(wave, bool)):
            return JSONResponse({"error": 'give "wave" as a number (1-based)'}, 400)

        def act() -> dict[str, Any]:
            op = self._operator()
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
        by = str(body.get("by") or "api")
        return await self._do(lambda: (self._operator().suspend if suspend
                                       else self._operator().resume)(app, cluster, by))

    async def _do(self, fn: Callable[[], dict[str, Any]]) -> JSONResponse:
        try:
            found = await run_in_threadpool(fn)
        except HoldError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        return JSONResponse({"api": "v1", **found})
