"""``POST /hooks/{github,gitlab,generic,registry}/<source>``: a push fetches its source at once.

A registry's push notification (``registry``: ``scheduler.server.registryhooks``
reads it) is checked the same way and moves an ``oci://`` source: when it pushed
to one of the source's repositories, the source's fetch is enqueued (or joined),
which reconciles its clusters on a new digest.

The order of a delivery's handling is the order of trust:

    body read under the size cap (413, ``bodies.BodyCap``, before any route)
    -> source known, webhook configured, secret set (404, 503)
    -> signature or token checked in constant time (401, logged without the body)
    -> event (ping answers; a pull request's previews its head: ``pull_previews.py``;
       other events are acknowledged and ignored)
    -> body parsed, no deeper than ``bodies.MAX_DEPTH`` (400)
    -> delivery id not handled in the last hour (a redelivery or replay enqueues nothing)
    -> the pushed ref is the source's branch or tag
    -> the units whose application paths the push touched: fleetsync.sync for each
       (a sync fetches the source at once), and once that fetch has recorded the
       pushed revision and those units have run at it, fleetsync.reconcile_cluster
       for every cluster using the source
    -> no such units known (no file list, a change outside every application path):
       fleetsync.fetch_source, which reconciles those clusters itself on a new revision
    -> the delivery id recorded, now that the delivery was handled

Until the sender has proved itself, the answers say nothing of the fleet: an
unknown provider, an unknown source and a source without a webhook are the
same 404, an unset secret is a 503 that does not name its variable, and a bad
signature is a 401 that does not say what was wrong. The server's log says it
all, to the operator.

A delivery id is recorded only once the delivery was handled (ignored for its
ref, or its tasks enqueued), so that a delivery that failed in between (a
refused body, the broker down, the server stopped) is handled again when the
forge redelivers it. Two copies of one delivery arriving together may both be
handled; that is harmless for the reason below.

Syncing the changed units first, and reconciling the clusters once they have
run at the pushed revision (at most ``FAN_OUT_WAIT`` later), keeps the
fleet-wide reconcile's renders and applies out of their way: in a fleet of a
thousand units the one that changed does not wait behind the other 999.

The fetch is deduplicated: while one asked for by an earlier push has not
begun (``StatusStore.want_fetch``), a push joins it, since that fetch will see
its commit, and a fetch that begins clears the mark.

Replaying an old delivery is harmless: a fetch only ever moves a source to what
its ref points at now, and a sync applies the recorded revision, not the one
the payload names. The answer is 202 with what was enqueued.
"""

from __future__ import annotations

import asyncio
import re
import time
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from shared import tasks_api
from shared.logs import get_logger
from shared.protocol import Trigger
from scheduler.server import hooks, pulls, registryhooks
from scheduler.server.backend import Backend
from scheduler.server.bodies import TooDeep
from scheduler.server.pull_previews import PullPreviews
from scheduler.server.config import (DELIVERY_TTL, FETCH_WANTED_TTL, FOLLOW_UP_TIMEOUT,
                                     example)

log = get_logger("fleetsync.server.webhooks")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
FOLLOW_UP_POLL = 0.02       # seconds between looks at the source's recorded revision
MAX_FOLLOW_UPS = 32         # pushes waiting for their fetch at once; more get no priority
MAX_WATCHED = 50            # changed units waited for before the clusters' reconcile
FAN_OUT_WAIT = 10.0         # seconds the clusters' reconcile waits for the changed units


NO_SUCH_WEBHOOK = "no such webhook"


class Receiver:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.follow_ups: set[asyncio.Task[None]] = set()
        self.waiting: set[tuple[str, str, tuple]] = set()     # (source, after, syncs)
        self.pulls = PullPreviews(backend)

    async def receive(self, request: Request) -> JSONResponse:
        provider, name = request.path_params["provider"], request.path_params["source"]
        where = {"provider": provider, "source": name,
                 "client": request.client.host if request.client else ""}
        fleet = await run_in_threadpool(self.backend.fleet)
        source = fleet.sources.get(name) if fleet and provider in hooks.PROVIDERS else None
        if source is None or source.webhook is None:
            log.warning("webhook refused: no such webhook", why=(
                f"no webhook provider {provider!r} (one of {', '.join(hooks.PROVIDERS)})"
                if provider not in hooks.PROVIDERS else
                f"no source named {name!r} in the fleet spec" if source is None else
                f"source {name!r} takes no webhooks: give it webhook: {{secretEnv: NAME}}"),
                **where)
            return _error(404, NO_SUCH_WEBHOOK)
        secret = self.backend.server.environ.get(source.webhook.secret_env, "")
        if not secret or example(secret):
            log.error("webhook secret not set (or still the example from deploy/)",
                      variable=source.webhook.secret_env, **where)
            return _error(503, "this webhook is not ready: the server's log says why")
        body = await request.body()             # at most max_body bytes (bodies.BodyCap)
        headers = {k.lower(): v for k, v in request.headers.items()}
        why = hooks.verify(provider, secret, headers, body)
        if why:
            log.warning("webhook refused", why=why, delivery=hooks.delivery_of(headers),
                        size=len(body), **where)
            return _error(401, "refused: the signature or token does not prove the sender")
        return await self._accepted(fleet, source, provider, headers, body, where)

    async def _accepted(self, fleet: Any, source: Any, provider: str, headers: dict[str, str],
                        body: bytes, where: dict[str, str]) -> JSONResponse:
        event = hooks.event_of(provider, headers)
        if event == "ping":
            return JSONResponse({"source": source.name, "pong": True})
        delivery = hooks.delivery_of(headers)
        answer: dict[str, Any] = {"source": source.name, "event": event, "delivery": delivery,
                                  "enqueued": []}
        if provider == "registry":
            return await self._registry(fleet, source, body, answer, where)
        if pulls.is_pull_event(provider, event):
            return await self.pulls.handle(fleet, source, provider, headers, body, where,
                                           answer)
        if event not in ("push", "tag_push"):
            return JSONResponse({**answer, "ignored": f"{event} events move no source"}, 202)
        try:
            push = hooks.parse_push(body)
        except TooDeep as exc:
            log.warning("webhook refused: body nested too deep", delivery=delivery, **where)
            return _error(400, str(exc))
        seen = bool(delivery) and await run_in_threadpool(self.backend.store.delivery_seen,
                                                          source.name, delivery)
        if seen:
            log.info("webhook delivery seen before: nothing enqueued", delivery=delivery, **where)
            return JSONResponse({**answer, "ignored": "delivery seen before"}, 202)
        answer.update(ref=push.ref, after=push.after)
        ignored = hooks.concerns(source, push.ref)
        if ignored:
            await self._handled(source.name, delivery)
            return JSONResponse({**answer, "ignored": ignored}, 202)
        changed = hooks.changed_units(fleet, source.name, push.paths) if push.paths else []
        requests = hooks.sync_requests(fleet, changed)
        handling = (source.name, push.after, tuple(requests))
        if requests and handling in self.waiting:
            return JSONResponse({**answer, "joined": "the same push is being handled"}, 202)
        if len(self.follow_ups) >= MAX_FOLLOW_UPS:
            requests = []                       # the plain fetch serves
        try:
            before = await run_in_threadpool(self._enqueue, fleet, source.name, push, requests,
                                             answer)
        except Exception as exc:                # the broker or Redis: the forge will retry
            log.error("webhook not enqueued", error=str(exc), **where)
            return _error(503, f"could not enqueue: {exc}")
        if answer.get("then"):
            self.waiting.add(handling)
            task = asyncio.create_task(self._fan_out(fleet, source.name, before, push.after,
                                                     changed))
            self.follow_ups.add(task)
            task.add_done_callback(self.follow_ups.discard)
            task.add_done_callback(partial(_forget, self.waiting, handling))
        await self._handled(source.name, delivery)
        log.info("webhook accepted", ref=push.ref, after=push.after, delivery=delivery,
                 enqueued=[e["task"] for e in answer["enqueued"]], **where)
        return JSONResponse(answer, 202)

    async def _registry(self, fleet: Any, source: Any, body: bytes, answer: dict[str, Any],
                        where: dict[str, str]) -> JSONResponse:
        """A registry's push: the source's fetch when it pushed to one of its repositories."""
        try:
            pushes, event_id = registryhooks.parse(body)
        except TooDeep as exc:
            log.warning("webhook refused: body nested too deep", **where)
            return _error(400, str(exc))
        delivery = answer["delivery"] = answer["delivery"] or event_id
        if delivery and await run_in_threadpool(self.backend.store.delivery_seen, source.name,
                                                delivery):
            return JSONResponse({**answer, "ignored": "delivery seen before"}, 202)
        answer["pushed"] = [f"{p.repository}:{p.tag}" if p.tag else f"{p.repository}@{p.digest}"
                            for p in pushes[:10]]
        ignored = registryhooks.concerns(fleet, source, pushes)
        if ignored:
            await self._handled(source.name, delivery)
            return JSONResponse({**answer, "ignored": ignored}, 202)
        try:
            await run_in_threadpool(self._enqueue, fleet, source.name, hooks.Push(), [], answer)
        except Exception as exc:                # the broker or Redis: the registry will retry
            log.error("webhook not enqueued", error=str(exc), **where)
            return _error(503, f"could not enqueue: {exc}")
        await self._handled(source.name, delivery)
        log.info("registry push accepted", pushed=answer["pushed"], delivery=delivery, **where)
        return JSONResponse(answer, 202)

    async def _handled(self, name: str, delivery: str) -> None:
        """Record the delivery id: a redelivery from now on enqueues nothing."""
        if not delivery:
            return
        try:
            await run_in_threadpool(self.backend.store.record_delivery, name, delivery,
                                    DELIVERY_TTL)
        except Exception as exc:                # Redis is down: a redelivery is handled again
            log.warning("webhook delivery id not recorded", error=str(exc), delivery=delivery)

    def _enqueue(self, fleet: Any, name: str, push: hooks.Push,
                 requests: list[tuple[str, str | None]], answer: dict[str, Any]) -> str:
        """Enqueue the syncs of the changed units (each fetches the source at once), or
        the source's fetch (or join the one waiting); the source's revision before."""
        store = self.backend.store
        before = store.source_record(name).revision
        if requests and not (push.after and push.after == before):
            store.want_fetch(name, FETCH_WANTED_TTL)   # a push without paths joins these
            for app, cluster in requests:
                task_id = self.backend.send(tasks_api.SYNC, [app, cluster],
                                            {"trigger": Trigger.WEBHOOK.value})
                answer["enqueued"].append({"task": tasks_api.SYNC, "args": [app, cluster],
                                           "id": task_id})
            answer["then"] = [{"task": tasks_api.RECONCILE_CLUSTER, "args": [cluster],
                               "when": "the syncs' fetch has recorded the pushed revision"}
                              for cluster in hooks.clusters_using(fleet, name)]
            return before
        if store.want_fetch(name, FETCH_WANTED_TTL):
            try:
                task_id = self.backend.send(tasks_api.FETCH_SOURCE, [name])
            except Exception:
                store.fetch_begins(name)        # nothing waits: the next push must enqueue
                raise
            answer["enqueued"].append({"task": tasks_api.FETCH_SOURCE, "args": [name],
                                       "id": task_id})
        else:
            answer["joined"] = f"a fetch of {name} asked for earlier has not begun: it will " \
                               "see this push"
        return before

    async def _fan_out(self, fleet: Any, name: str, before: str, after: str,
                       changed: list[tuple[str, str]]) -> None:
        """Once the syncs' fetch has recorded the pushed revision and the changed units
        have run at it (or ``FAN_OUT_WAIT`` later), reconcile every cluster that uses the
        source: what a fetch that finds a new revision does. Should the revision never
        be recorded, ask for the source's fetch after all."""
        store, send = self.backend.store, self.backend.send
        try:
            revision = await self._recorded(name, before, after)
            if revision is None:
                log.warning("webhook: the pushed revision was not recorded in time; fetching "
                            "the source", source=name, after=after, timeout=FOLLOW_UP_TIMEOUT)
                await run_in_threadpool(send, tasks_api.FETCH_SOURCE, [name])
                return
            if len(changed) <= MAX_WATCHED:
                await self._ran_at(changed, revision)
            clusters = hooks.clusters_using(fleet, name)
            for cluster in clusters:
                await run_in_threadpool(send, tasks_api.RECONCILE_CLUSTER, [cluster],
                                        {"trigger": Trigger.WEBHOOK.value})
            log.info("webhook: clusters reconciled at the pushed revision", source=name,
                     revision=revision, clusters=clusters)
        except Exception as exc:                # a follow-up never takes the server down
            log.warning("webhook follow-up failed", source=name, error=str(exc))

    async def _recorded(self, name: str, before: str, after: str) -> str | None:
        """The source's revision once it is the pushed one (or, when the push named no
        commit, once it moved); None after ``FOLLOW_UP_TIMEOUT``."""
        deadline = time.monotonic() + FOLLOW_UP_TIMEOUT
        wanted = after if _SHA.fullmatch(after or "") else ""
        while time.monotonic() < deadline:
            revision = (await run_in_threadpool(self.backend.store.source_record,
                                                name)).revision
            if revision and (revision == wanted or (not wanted and revision != before)):
                return revision
            await asyncio.sleep(FOLLOW_UP_POLL)
        return None

    async def _ran_at(self, units: list[tuple[str, str]], revision: str) -> None:
        """Wait (at most ``FAN_OUT_WAIT``) until every unit's last run was at ``revision``,
        so that the clusters' reconcile queues nothing ahead of them."""
        deadline = time.monotonic() + FAN_OUT_WAIT
        while time.monotonic() < deadline:
            revisions = await run_in_threadpool(self.backend.unit_revisions, units)
            if all(r == revision for r in revisions):
                return
            await asyncio.sleep(FOLLOW_UP_POLL * 5)


def _forget(waiting: set[tuple[str, str, tuple]], key: tuple[str, str, tuple],
            _: object) -> None:
    waiting.discard(key)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)
