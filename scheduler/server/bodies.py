"""Request bodies: capped in size on every route, parsed as JSON no deeper than a limit.

``BodyCap`` sits in front of every route (behind ``access.Access``, so a
stranger's request is refused before its body is read). It reads the whole
body, refusing it with 413 as soon as it is known to be larger than
``max_body`` (a ``Content-Length`` over the cap is refused unread), and hands
the route the body it read. Server bodies are small (a push notification, a
sync request), so holding one in memory is the cheap way to cap every route
at once, present and future.

``loads`` is the one JSON parser of request bodies. Python's parser recurses
once per nesting level, so a body of a few thousand ``[`` is a
``RecursionError`` (a 500, where the routes mean a 400); ``nesting`` measures
the depth first, without parsing, and ``loads`` refuses more than
``MAX_DEPTH`` levels with ``TooDeep``. ``json_object`` is the API's reading of a
POST: JSON by its ``Content-Type`` (a cross-site form cannot send that), an
object, or the 415 or 400 that says what is wrong.
"""

from __future__ import annotations

import json
from itertools import accumulate
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logs import get_logger

log = get_logger("fleetsync.server")
MAX_DEPTH = 64          # a GitHub push nests 5 levels; 64 leaves room for any forge's payload
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _STEP)


class TooDeep(Exception):
    """A JSON body that nests deeper than ``MAX_DEPTH`` (not a ``ValueError``: callers that
    leave out what they cannot read must still refuse this)."""


def nesting(body: bytes) -> int:
    """How deep ``body``'s arrays and objects nest, brackets inside strings aside (pure).

    Linear in the body: it is cut at every quote, and a quote ends a string unless an
    odd run of backslashes stands before it."""
    depth = deepest = 0
    inside = False
    for segment in body.split(b'"'):
        if inside:
            inside = (len(segment) - len(segment.rstrip(b"\\"))) % 2 == 1
            continue
        levels = list(accumulate(map(_STEP.__getitem__, segment.translate(None, _NOT_BRACKETS)),
                                 initial=depth))
        depth, deepest = levels[-1], max(deepest, *levels)
        inside = True                       # the quote after this segment opens a string
    return deepest


def loads(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads(body)``; ``TooDeep`` beyond ``max_depth``, ``ValueError`` if not JSON."""
    openers = body.count(b"[") + body.count(b"{")      # no deeper than this, counted in C
    if openers > max_depth and nesting(body) > max_depth:
        raise TooDeep(f"the body nests deeper than {max_depth} levels")
    return json.loads(body)


async def json_object(request: Request) -> dict[str, Any] | JSONResponse:
    """The API's JSON object body, or the answer that refuses it (415, 400)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse({"error": "send a JSON body with Content-Type: application/json"},
                            415)
    try:
        body = loads(await request.body() or b"{}")
    except TooDeep as exc:
        return JSONResponse({"error": str(exc)}, 400)
    except ValueError:
        return JSONResponse({"error": "the body is not JSON"}, 400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "the body must be a JSON object"}, 400)
    return body


class BodyCap:
    """ASGI middleware: every request body read whole, at most ``limit`` bytes (else 413)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return                      # the client went away: nobody to answer
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(scope, send)
                return
            more = message.get("more_body", False)
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        log.warning("request refused: body too large", path=scope["path"], limit=self.limit)
        body = json.dumps({"error": f"body larger than {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then waits as the original does."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()          # a disconnect, when it comes
        given = True
        return {"type": "http.request", "body": body, "more_body": False}
    return replay
