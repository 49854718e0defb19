"""The server's routes, assembled into one ASGI application.

A request meets ``access.Access`` first (who may ask), then ``bodies.BodyCap``
(a body of at most ``FLEETSYNC_SERVER_MAX_BODY`` bytes), then its route.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from scheduler.server.access import Access
from scheduler.server.api import Api
from scheduler.server.backend import Backend
from scheduler.server.bodies import BodyCap
from scheduler.server.config import ServerSettings
from scheduler.server.holds_api import HoldsApi
from scheduler.server.pages import Pages
from scheduler.server.preview_poster import Poster
from scheduler.server.previews_api import PreviewsApi
from scheduler.server.webhooks import Receiver

STATIC = Path(__file__).parent / "static"


def build(server: ServerSettings, backend: Backend | None = None) -> Any:
    """The ASGI application of ``server``."""
    backend = backend or Backend(server)
    api, pages, receiver = Api(backend), Pages(backend), Receiver(backend)
    holds, previews = HoldsApi(backend), PreviewsApi(backend)

    async def healthz(request: Request) -> PlainTextResponse:
        try:
            ok = await run_in_threadpool(backend.ping)
        except Exception as exc:            # Redis down: not ready, and say why
            return PlainTextResponse(f"redis: {exc}\n", 503)
        return PlainTextResponse("ok\n" if ok else "redis: no answer\n", 200 if ok else 503)

    async def not_found(request: Request, exc: Exception) -> Any:
        if request.url.path.startswith(("/api/", "/hooks/")):
            return JSONResponse({"error": "no such endpoint"}, 404)
        return pages.render("missing.html", 404, what=f"nothing at {request.url.path}", now="")

    routes = [
        Route("/", pages.fleet),
        Route("/units/{cluster}/{app}", pages.unit),
        Route("/revisions/{revision}", pages.revision),
        Route("/previews", pages.previews),
        Route("/images", pages.images),
        Route("/previews/{preview}", pages.preview),
        Route("/api/v1/units", api.units),
        Route("/api/v1/units/{cluster}/{app}", api.unit),
        Route("/api/v1/revisions", api.revisions),
        Route("/api/v1/revisions/{revision}", api.revisions),
        Route("/api/v1/sources", api.sources),
        Route("/api/v1/sync", api.sync, methods=["POST"]),
        Route("/api/v1/previews", previews.recent),
        Route("/api/v1/previews", previews.create, methods=["POST"]),
        Route("/api/v1/previews/{preview}", previews.one),
        Route("/api/v1/rollouts/{app}", holds.rollout),
        Route("/api/v1/rollouts/{app}/{action}", holds.rollout_action, methods=["POST"]),
        Route("/api/v1/suspend", holds.suspend, methods=["POST"]),
        Route("/api/v1/resume", holds.resume, methods=["POST"]),
        Route("/hooks/{provider}/{source}", receiver.receive, methods=["POST"]),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found},
                    lifespan=lifespan_of(backend))
    app.state.backend = backend
    app.state.receiver = receiver
    return Access(BodyCap(app, server.max_body), server)


def lifespan_of(backend: Backend) -> Any:
    """Run the forge poster (``preview_poster.py``) for as long as the server serves."""
    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        poster = Poster(backend.redis, backend.fleet, backend.server.environ)
        task = asyncio.create_task(poster.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return lifespan
