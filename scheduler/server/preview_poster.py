"""Posting a pull request's preview to its forge: a commit status at once, the result when done.

The server posts, not the notifier: the server is the process that took the
webhook and knows its own dashboard URL, and the posting is a few requests per
pull request. What must survive a restart is in Redis, so a restarted server
(or another replica) carries on where this one stopped:

    webhook -> previews.start(...) -> want(id, url)        HSET preview-posts id {posted, url}
    poster pass (every ``EVERY`` s, one claim per id):
        posted "none"         -> pending status on the head ("running")
        record done | failed  -> final status, then the comment: created once, then
                                 edited in place (its id in preview-pr:<...>, found by its
                                 marker when that was lost), HDEL the id
        no answer, 429, 5xx   -> again after back-off (send.backoff; Retry-After wins),
                                 at most ``MAX_ATTEMPTS``; 4xx or a missing token: dropped,
                                 logged
        still running after ``MAX_WAIT`` -> an ``error`` status saying so, dropped

Keys (``shared.state.keys``; the server's Redis ACL user writes them):

    fleetsync:preview-posts                  hash preview id -> {"posted", "url"} (JSON)
    fleetsync:preview-posting:<id>           claim of one pass over an id (30 s)
    fleetsync:preview-pr:<provider>:<repo>:<n>  hash: comment (its id), preview (the newest)

The commit status: context ``fleetsync/preview``; ``pending`` while it runs,
``success`` when nothing is refused or failed (changes are what a pull request
is for, as Atlantis' plan status), ``failure`` when a unit is refused or failed
(merging would break a cluster), ``error`` when the preview itself failed. Its
description is the headline (``3 apps, 12 clusters change, 1 refused``), its
link the preview's dashboard page. Only the pull request's newest preview
writes the comment: an older one that finishes late sets its own commit's
status and leaves the comment to the newer.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Mapping

from starlette.concurrency import run_in_threadpool

from scheduler import preview_markdown
from scheduler.notify.forge import Call, Forge, ForgeError, http_call
from scheduler.notify.send import backoff
from shared.logs import get_logger
from shared.spec.model import Fleet, Route
from shared.state import keys, previews

log = get_logger("fleetsync.server.previews")

POSTS = keys.PREVIEW_POSTS
EVERY = 0.5
MAX_ATTEMPTS = 8
MAX_WAIT = 3600.0
CLAIM_MS = 30_000
PR_TTL = 90 * 24 * 3600
LIMITS = {"github": preview_markdown.GITHUB_LIMIT, "gitlab": preview_markdown.GITLAB_LIMIT}


def pr_key(origin: Mapping[str, Any]) -> str:
    return keys.preview_pr(origin["provider"], origin["repository"], origin["number"])


def claim_key(preview_id: str) -> str:
    return keys.preview_posting(preview_id)


def state_of(record: Mapping[str, Any]) -> str:
    """The commit status of a preview (pure; see the module docstring)."""
    if record.get("state") == "failed":
        return "error"
    if record.get("state") != "done":
        return "pending"
    s = record.get("summary") or {}
    return "failure" if s.get("refused") or s.get("failed") else "success"


def route_for(fleet: Fleet | None, origin: Mapping[str, Any]) -> Route | None:
    """The ``github``/``gitlab`` route whose repository is the pull request's."""
    for route in (fleet.notifications.routes if fleet else ()):
        if route.provider == origin.get("provider") and \
                route.repository.lower() == str(origin.get("repository", "")).lower():
            return route
    return None


def want(client: Any, preview_id: str, origin: Mapping[str, Any], url: str) -> None:
    """Ask for a preview's posting; it becomes the pull request's newest."""
    pipe = client.pipeline(transaction=True)
    pipe.hset(POSTS, preview_id, json.dumps({"posted": "none", "url": url}))
    pipe.hset(pr_key(origin), "preview", preview_id)
    pipe.expire(pr_key(origin), PR_TTL)
    pipe.execute()


class Poster:
    def __init__(self, client: Any, fleet: Any, env: Mapping[str, str],
                 call: Call = http_call) -> None:
        self.client, self.fleet, self.env, self.call = client, fleet, env, call
        self.attempts: dict[str, int] = {}
        self.next_at: dict[str, float] = {}
        self.failing = ""                       # the last pass's error, logged once

    async def run(self) -> None:
        """Pass after pass until cancelled; a failing pass is logged (once while it fails
        the same way), never fatal."""
        while True:
            try:
                await run_in_threadpool(self.pass_once)
                if self.failing:
                    log.info("preview posting passes again")
                self.failing = ""
            except Exception as exc:            # Redis away: the next pass tries again
                if str(exc) != self.failing:
                    log.warning("preview posting pass failed", error=str(exc))
                self.failing = str(exc)
            await asyncio.sleep(EVERY)

    def pass_once(self) -> None:
        for raw_id, raw in self.client.hgetall(POSTS).items():
            pid = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            if time.monotonic() < self.next_at.get(pid, 0.0):
                continue
            if not self.client.set(claim_key(pid), "1", nx=True, px=CLAIM_MS):
                continue                        # another server has it
            try:
                self._one(pid, json.loads(raw))
            finally:
                self.client.delete(claim_key(pid))

    def _one(self, pid: str, job: dict[str, Any]) -> None:
        record = previews.load(self.client, pid)
        origin = (record or {}).get("origin")
        route = route_for(self.fleet(), origin) if origin else None
        if record is None or route is None:
            log.warning("preview not posted: " + ("it is gone" if record is None else
                        f"no github or gitlab route for {origin and origin.get('repository')}"),
                        preview=pid)
            self._forget(pid)
            return
        forge = Forge(route, self.env, self.call)
        try:
            self._post(forge, pid, job, record)
        except ForgeError as err:
            self._failed(pid, route, err)

    def _post(self, forge: Forge, pid: str, job: dict[str, Any], record: dict[str, Any]) -> None:
        origin, url = record["origin"], job.get("url", "")
        finished = record.get("state") in ("done", "failed")
        if not finished and time.time() - float(record.get("started_at") or 0) > MAX_WAIT:
            forge.status(origin["head_sha"], "error",
                         f"the preview did not finish in {int(MAX_WAIT // 60)} minutes", url)
            self._forget(pid)
            return
        if job.get("posted") == "none":
            forge.status(origin["head_sha"], "pending",
                         preview_markdown.headline(record), url)
            job["posted"] = "pending"
            self.client.hset(POSTS, pid, json.dumps(job))
        if not finished:
            return
        forge.status(origin["head_sha"], state_of(record), preview_markdown.headline(record), url)
        self._comment(forge, pid, record, url)
        log.info("preview posted", preview=pid, repository=origin["repository"],
                 number=origin["number"], state=state_of(record))
        self._forget(pid)

    def _comment(self, forge: Forge, pid: str, record: dict[str, Any], url: str) -> None:
        origin = record["origin"]
        key = pr_key(origin)
        newest, known = self.client.hmget(key, "preview", "comment")
        newest = newest.decode() if isinstance(newest, bytes) else newest
        if newest and newest != pid:
            log.info("preview's comment left to the pull request's newer preview",
                     preview=pid, newer=newest)
            return
        body = preview_markdown.render(record, limit=LIMITS[origin["provider"]], link=url)
        comment = forge.comment(int(origin["number"]), body, int(known) if known else None)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, "comment", comment)
        pipe.expire(key, PR_TTL)
        pipe.execute()

    def _failed(self, pid: str, route: Route, err: ForgeError) -> None:
        attempts = self.attempts.get(pid, 0) + 1
        self.attempts[pid] = attempts
        if err.transient and attempts < MAX_ATTEMPTS:
            delay = max(backoff(attempts), err.retry_after or 0.0)
            self.next_at[pid] = time.monotonic() + delay
            log.warning("preview posting will be retried", preview=pid, route=route.name,
                        error=str(err), attempt=attempts, retry_in=round(delay, 1))
            return
        log.error("preview posting dropped", preview=pid, route=route.name, error=str(err),
                  attempts=attempts)
        self._forget(pid)

    def _forget(self, pid: str) -> None:
        self.client.hdel(POSTS, pid)
        self.attempts.pop(pid, None)
        self.next_at.pop(pid, None)
