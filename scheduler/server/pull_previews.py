"""``POST /hooks/{github,gitlab}/<source>`` with a pull-request event: preview its head.

``webhooks.Receiver`` has already checked the source, its webhook and the
signature or token (the push hooks' order of trust); a pull-request event comes
here instead of moving the source:

    action that brings a new head? (``pulls.parse``; others: 202, ignored, why)
    -> the pull request's repository is the source's (202, ignored, otherwise)
    -> delivery id not handled in the last hour (a redelivery starts nothing)
    -> ``scheduler.previews.start``: the head commit, by its SHA (the forges serve the
       commit of every open pull request, from a fork too, in the base repository),
       against the branch it targets, on the workers
    -> ``preview_poster.want``: a pending status at once, the result when it is done
    -> 202 ``{preview, url, posting}``

Nothing here moves the source or changes a unit: a preview is read-only.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from scheduler import previews as runs
from scheduler.server import preview_poster, pulls
from scheduler.server.backend import Backend
from scheduler.server.bodies import TooDeep
from scheduler.server.config import DELIVERY_TTL
from shared.logs import get_logger

log = get_logger("fleetsync.server.webhooks")


class PullPreviews:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def handle(self, fleet: Any, source: Any, provider: str, headers: dict[str, str],
                     body: bytes, where: dict[str, str], answer: dict[str, Any]
                     ) -> JSONResponse:
        try:
            pull, why = pulls.parse(provider, body)
        except TooDeep as exc:
            log.warning("webhook refused: body nested too deep", **where)
            return JSONResponse({"error": str(exc)}, 400)
        if pull is None:
            return JSONResponse({**answer, "ignored": why}, 202)
        why = pulls.same_repository(source.url, pull)
        if why:
            log.warning("pull request webhook ignored", why=why, repository=pull.repository,
                        **where)
            return JSONResponse({**answer, "ignored": why}, 202)
        delivery = answer["delivery"]
        store = self.backend.store
        if delivery and await run_in_threadpool(store.delivery_seen, source.name, delivery):
            return JSONResponse({**answer, "ignored": "delivery seen before"}, 202)
        try:
            pid = await run_in_threadpool(self._start, source.name, pull)
        except Exception as exc:                # the broker or Redis: the forge will retry
            log.error("preview not started", error=str(exc), **where)
            return JSONResponse({"error": f"could not start the preview: {exc}"}, 503)
        if delivery:
            try:
                await run_in_threadpool(store.record_delivery, source.name, delivery,
                                        DELIVERY_TTL)
            except Exception as exc:            # Redis away: a redelivery previews again
                log.warning("webhook delivery id not recorded", error=str(exc),
                            delivery=delivery)
        route = preview_poster.route_for(fleet, pull.origin())
        posting = f"route {route.name}" if route else \
            f"nothing: no {provider} route for {pull.repository} in notifications.routes"
        log.info("preview started for a pull request", preview=pid,
                 repository=pull.repository, number=pull.number, head=pull.head_sha,
                 posting=posting, **where)
        return JSONResponse({**answer, "preview": pid, "url": self.url(pid),
                             "number": pull.number, "head_sha": pull.head_sha,
                             "posting": posting}, 202)

    def _start(self, source: str, pull: pulls.PullRequest) -> str:
        pid = runs.start(self.backend.celery(), self.backend.redis, source=source,
                         revision=pull.head_sha, base=pull.base,
                         requested_by=f"{pull.provider}:{pull.repository}#{pull.number}",
                         origin=pull.origin())
        preview_poster.want(self.backend.redis, pid, pull.origin(), self.url(pid))
        return pid

    def url(self, pid: str) -> str:
        return f"{self.backend.server.public_url}/previews/{pid}"
