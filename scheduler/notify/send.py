"""Delivering notifications: providers, retries with back-off, a rate limit per route.

``loop`` decides what to say (``decide.Message``) and hands each message
to ``Sender.dispatch``, which puts it in the outbox of every route that wants
it. ``Sender.pump`` then delivers what is due, route by route, in order:

    message -> routes that want it -> Outbox (FIFO) -> render for the provider -> POST
                                        |  429/5xx/no answer: again after back-off
                                        |  (1, 2, 4 ... 60 s, jittered; Retry-After wins),
                                        |  at most ``max_attempts`` tries; 4xx: dropped, logged
                                        +- at most maxPerMinute POSTs in any 60 s

A burst above the limit is held, not dropped: when one request is left in the
window and more than one message waits, they all go out as one summary (chat
and generic webhooks); commit statuses are never merged (each is its own
commit and context), they wait, and a newer status for the same commit and
context replaces one still waiting.

Providers: ``slack`` posts ``{"text": ...}`` to the URL in ``urlEnv``;
``webhook`` posts the message as JSON (``event``, ``application``,
``revision``, ``state``, ``text``, ``clusters``) with ``Authorization: Bearer``
when ``tokenEnv`` is set; ``github`` posts ``{api}/repos/{repository}/statuses/{sha}``
with ``state``, ``description`` and ``context`` (``fleetsync/<app>``, or
``fleetsync`` for a fleet-wide route). Secrets are read from the environment
given to the sender, never logged.

Redirects are never followed: a redirected POST would carry the route's token
to wherever the ``Location`` points (another host, or from https to plain
http), and the standard library would turn it into a GET and call that
delivered. A 3xx answer is a failed delivery that says where it pointed (its
scheme and host only), so the operator can set the route's URL to that place.

Delivery is at most once: a message is claimed before it is sent, and what a
stopped notifier still held is not sent by another.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import Callable, Mapping

from scheduler.notify.decide import Message
from shared.logs import get_logger
from shared.spec.model import Route

log = get_logger("fleetsync.notify")

WINDOW = 60.0
DESCRIPTION_CHARS = 140      # GitHub refuses a longer commit status description


class DeliveryError(Exception):
    """A POST that did not succeed; ``transient`` ones are tried again."""

    def __init__(self, message: str, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: Mapping[str, str]


Post = Callable[[Request], None]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Leaves every 3xx to ``http_post`` as an ``HTTPError``: nothing is sent twice."""

    def redirect_request(self, *_: object, **__: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http_post(request: Request, timeout: float = 10.0) -> None:
    """POST with the standard library; raise ``DeliveryError`` unless the answer is 2xx."""
    req = urllib.request.Request(request.url, data=request.body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          "User-Agent": "fleetsync-notifier", **request.headers})
    try:
        with _OPENER.open(req, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as err:
        if 300 <= err.code < 400:
            raise DeliveryError(_redirected(err.code, err.headers.get("Location")), False) from err
        transient = err.code in (408, 429) or err.code >= 500
        raise DeliveryError(f"HTTP {err.code}", transient, _retry_after(err.headers.get("Retry-After"))) from err
    except (urllib.error.URLError, OSError) as err:
        raise DeliveryError(f"no answer: {getattr(err, 'reason', err)}", True) from err


def _redirected(code: int, location: str | None) -> str:
    """Why a 3xx is a failure; names the target's scheme, host and port, never its path,
    query or user information (they may hold a secret)."""
    target = urllib.parse.urlsplit(location or "")
    host = target.netloc.rpartition("@")[2]
    where = f" to {target.scheme}://{host}" if target.scheme and host else ""
    return (f"HTTP {code}: redirected{where}, not followed (a redirect would carry the "
            "route's credentials); set the route's URL to where it answers itself")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def backoff(attempt: int, base: float = 1.0, cap: float = 60.0,
            rand: Callable[[], float] = random.random) -> float:
    """Seconds before try ``attempt + 1``: base * 2**(attempt - 1), capped, +-20 % jitter."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * (0.8 + 0.4 * rand())


# -- which routes, and what they are sent ---------------------------------------

def wants(route: Route, message: Message) -> bool:
    if route.provider == "gitlab":
        return False                # previews only (scheduler/notify/forge.py)
    if message.app is None:
        return route.provider == "github" and route.context == "fleet" and message.route == route.name
    if not route.covers(message.app):
        return False
    if route.provider == "github":
        return route.context == "application" and message.event in ("rollup", "pending")
    if message.event in ("rollup", "held"):
        return message.event in route.events
    return message.event in ("failure", "recovery") and "failure" in route.events


class RouteConfigError(Exception):
    """A route that cannot be sent to (an environment variable it names is not set)."""


def render(route: Route, messages: list[Message], env: Mapping[str, str]) -> Request:
    """The request that delivers ``messages`` (one, or a summary of several) on ``route``."""
    headers = {}
    if route.token_env:
        token = env.get(route.token_env)
        if not token:
            raise RouteConfigError(f"route {route.name}: {route.token_env} is not set")
        headers["Authorization"] = f"Bearer {token}"
    if route.provider == "github":
        (m,) = messages
        context = "fleetsync" if m.app is None else f"fleetsync/{m.app}"
        description = "fleet: " + (m.summary or m.text)
        if len(description) > DESCRIPTION_CHARS:
            description = description[:DESCRIPTION_CHARS - 3] + "..."
        body = {"state": m.state, "description": description, "context": context}
        headers["Accept"] = "application/vnd.github+json"
        return Request(f"{route.api}/repos/{route.repository}/statuses/{m.revision}",
                       json.dumps(body).encode(), headers)
    url = route.url or env.get(route.url_env or "")
    if not url:
        raise RouteConfigError(f"route {route.name}: {route.url_env} is not set")
    if len(messages) == 1:
        text, payload = messages[0].text, messages[0].payload()
    else:
        text = (f"{len(messages)} notifications held by the rate limit "
                f"({route.max_per_minute} per minute):\n" + "\n".join(m.text for m in messages))
        payload = {"event": "summary", "text": text, "messages": [m.payload() for m in messages]}
    body = {"text": text} if route.provider == "slack" else payload
    return Request(url, json.dumps(body).encode(), headers)


# -- one route's outbox ----------------------------------------------------------------

@dataclass
class _InFlight:
    messages: list[Message]
    attempts: int = 0
    next_at: float = 0.0


class Outbox:
    """The messages waiting for one route, delivered in order within its rate limit."""

    def __init__(self, route: Route, env: Mapping[str, str], post: Post, *,
                 clock: Callable[[], float] = time.monotonic, backoff_base: float = 1.0,
                 max_attempts: int = 8) -> None:
        self.route = route
        self.env = env
        self.post = post
        self.clock = clock
        self.backoff_base = backoff_base
        self.max_attempts = max_attempts
        self.queue: deque[Message] = deque()
        self.posts: deque[float] = deque()          # when each POST of the window went out
        self.current: _InFlight | None = None
        self.delivered = 0
        self.dropped = 0

    def offer(self, message: Message) -> None:
        if self.route.provider == "github":
            target = (message.revision, message.app, message.route)
            for queued in list(self.queue):
                if (queued.revision, queued.app, queued.route) == target:
                    self.queue.remove(queued)       # a newer status for the same commit
        self.queue.append(message)

    def waiting(self) -> int:
        return len(self.queue) + (len(self.current.messages) if self.current else 0)

    def pump(self) -> None:
        """Deliver what is due now; return when the rest must wait (back-off, rate limit)."""
        while self.current is not None or self.queue:
            now = self.clock()
            while self.posts and now - self.posts[0] >= WINDOW:
                self.posts.popleft()
            free = self.route.max_per_minute - len(self.posts)
            if free <= 0:
                return
            if self.current is None:
                self.current = _InFlight(self._take(free), next_at=now)
            if now < self.current.next_at:
                return
            self._attempt(self.current, now)

    def _take(self, free: int) -> list[Message]:
        if free > 1 or len(self.queue) == 1 or self.route.provider == "github":
            return [self.queue.popleft()]
        held = list(self.queue)
        self.queue.clear()
        return held

    def _attempt(self, flight: _InFlight, now: float) -> None:
        keys = [m.key for m in flight.messages]
        try:
            request = render(self.route, flight.messages, self.env)
        except RouteConfigError as err:
            log.error("notification dropped", route=self.route.name, keys=keys, error=str(err))
            self._done(delivered=False)
            return
        self.posts.append(now)
        flight.attempts += 1
        try:
            self.post(request)
        except DeliveryError as err:
            if err.transient and flight.attempts < self.max_attempts:
                delay = backoff(flight.attempts, self.backoff_base)
                flight.next_at = now + max(delay, err.retry_after or 0.0)
                log.warning("notification will be retried", route=self.route.name, keys=keys,
                            error=str(err), attempt=flight.attempts,
                            retry_in=round(flight.next_at - now, 1))
                return
            log.error("notification dropped", route=self.route.name, keys=keys, error=str(err),
                      attempts=flight.attempts)
            self._done(delivered=False)
            return
        log.info("notification sent", route=self.route.name, keys=keys, attempts=flight.attempts)
        self._done(delivered=True)

    def _done(self, delivered: bool) -> None:
        assert self.current is not None
        if delivered:
            self.delivered += len(self.current.messages)
        else:
            self.dropped += len(self.current.messages)
        self.current = None


class Sender:
    """Every route's outbox; routes follow the spec (a changed route keeps what waits)."""

    def __init__(self, env: Mapping[str, str], post: Post = http_post, *,
                 clock: Callable[[], float] = time.monotonic, backoff_base: float = 1.0) -> None:
        self.env = env
        self.post = post
        self.clock = clock
        self.backoff_base = backoff_base
        self.outboxes: dict[str, Outbox] = {}

    def set_routes(self, routes: tuple[Route, ...]) -> None:
        old = self.outboxes
        self.outboxes = {}
        for route in routes:
            box = old.get(route.name) or Outbox(route, self.env, self.post, clock=self.clock,
                                                 backoff_base=self.backoff_base)
            box.route = route
            self.outboxes[route.name] = box
        for name, box in old.items():
            if name not in self.outboxes and box.waiting():
                log.warning("route left the spec: its waiting notifications are dropped",
                            route=name, waiting=box.waiting())

    def routes_for(self, message: Message) -> list[str]:
        return [name for name, box in self.outboxes.items() if wants(box.route, message)]

    def dispatch(self, message: Message) -> None:
        for name in self.routes_for(message):
            self.outboxes[name].offer(message)

    def pump(self) -> None:
        for box in self.outboxes.values():
            box.pump()

    def waiting(self) -> int:
        return sum(box.waiting() for box in self.outboxes.values())
