"""Who may talk to the server: an ASGI middleware in front of every route.

- Webhooks (``/hooks/``) carry their own proof (the source's signature or
  token) and pass; so does ``/healthz`` (probes carry no credentials).
- With tokens configured, every other request needs one: ``Authorization:
  Bearer <token>`` (scripts), or HTTP Basic with the token as the password
  (a browser asks for it once), compared in constant time with each token.
- Without tokens the server listens on loopback only (``config.check_exposure``)
  and answers only requests addressed to a loopback name, so a web page that
  rebinds its own host name to 127.0.0.1 cannot read the fleet through a
  visitor's browser.
- A POST from a page of another origin is refused whatever its credentials.
  An origin is scheme, host and port (``http://127.0.0.1:3000`` is another
  origin than ``http://127.0.0.1:8085``), compared with the scheme the server
  was reached by and the ``Host`` it was asked for; an ``Origin`` that cannot
  be read (``null``) is another origin.
- The token found must hold the scope of the request (``required_scope``):
  ``read`` for every GET, ``sync``, ``hold``, ``rollout`` or ``preview`` for the POSTs; 403
  naming the token and the scope otherwise. Its applications are checked by
  the routes (``permitted``), which know the application asked for.
- A POST that carries a browser's credentials (HTTP Basic, or the session
  cookie) needs the page's CSRF token (``csrf.py``); it is then recorded as
  done from the dashboard. Scripts with ``Bearer`` need none.

The caller (a ``tokens.Token``; ``tokens.LOCAL`` without tokens), the page's
CSRF token and how the request came (``dashboard`` or ``api``) are left in
the request's state for the routes.
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler.server import csrf, tokens
from scheduler.server.config import ServerSettings, is_loopback
from scheduler.server.tokens import LOCAL, Token

OPEN_PREFIXES = ("/hooks/", "/healthz")
Refusal = tuple[int, str, list[tuple[bytes, bytes]]]


def required_scope(method: str, path: str) -> str:
    """The scope a request needs (pure)."""
    if method in ("GET", "HEAD"):
        return "read"
    if path == "/api/v1/sync":
        return "sync"
    if path == "/api/v1/previews":
        return "preview"
    if path in ("/api/v1/suspend", "/api/v1/resume"):
        return "hold"
    if path.startswith("/api/v1/rollouts/"):
        return "rollout"
    return "read"


def caller(request: Request) -> Token:
    return getattr(request.state, "caller", LOCAL)


def via(request: Request) -> str:
    return getattr(request.state, "via", "api")


def permitted(request: Request, scope: str, app: str) -> JSONResponse | None:
    """The 403 for a caller whose token may not do ``scope`` on application ``app``."""
    refused = caller(request).refusal(scope, app)
    return JSONResponse({"error": refused}, 403) if refused else None


def host_name(host_header: str) -> str:
    """``127.0.0.1:8085`` -> ``127.0.0.1``; ``[::1]:8085`` -> ``::1``."""
    return urlsplit(f"//{host_header}").hostname or ""


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> tuple[str, str, int] | None:
    """``https://Example.com`` -> ``("https", "example.com", 443)``; None when unreadable."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname, port


def same_origin(origin: str, scheme: str, host_header: str) -> bool:
    """Whether a request's ``Origin`` is the origin it was sent to (pure)."""
    given = origin_of(origin)
    return given is not None and given == origin_of(f"{scheme}://{host_header}")


def loopback_name(name: str) -> bool:
    return is_loopback(name) or name == "localhost" or name.endswith(".localhost")


class Access:
    def __init__(self, app: ASGIApp, server: ServerSettings) -> None:
        self.app, self.server = app, server
        self.process_key = secrets.token_bytes(32)      # CSRF without tokens (loopback)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        found = self.caller(scope, headers)
        if not isinstance(found, Token):
            await _refuse(send, found)
            return
        session = csrf.session_of(headers.get("cookie", ""))
        refused = self.scoped(scope, headers, found, session)
        if refused is not None:
            await _refuse(send, refused)
            return
        fresh = session is None and scope["method"] == "GET" and \
            not scope["path"].startswith("/api/")
        session = session or csrf.new_session()
        key = csrf.key_of(found.secret, self.process_key)
        scope["state"] = {**scope.get("state", {}), "caller": found,
                          "csrf": csrf.value(key, found.name, session),
                          "via": "dashboard" if headers.get(csrf.HEADER) else "api"}
        if not fresh:
            await self.app(scope, receive, send)
            return
        secure = scope.get("scheme") == "https"

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"set-cookie", csrf.set_cookie(session, secure))]}
            await send(message)
        await self.app(scope, receive, with_cookie)

    def caller(self, scope: Scope, headers: dict[str, str]) -> Token | Refusal:
        """Who asks (a token, or ``LOCAL`` on loopback), or why they may not."""
        host = headers.get("host", "")
        origin = headers.get("origin", "")
        if scope["method"] not in ("GET", "HEAD") and origin and \
                not same_origin(origin, scope.get("scheme", "http"), host):
            return 403, "requests from pages of another origin are refused", []
        if self.server.tokens:
            given = tokens.presented(headers.get("authorization", ""))
            found = tokens.find(given[1], self.server.tokens) if given else None
            if found is not None:
                return found
            # a page, or the API asked by a page (it has the session cookie): the browser
            # answers a Basic challenge with the credentials it was given for the page
            from_page = csrf.session_of(headers.get("cookie", "")) is not None
            challenge = b'Bearer realm="fleetsync"' \
                if scope["path"].startswith("/api/") and not from_page \
                else b'Basic realm="fleetsync", charset="UTF-8"'
            return 401, "a token is required (Authorization: Bearer TOKEN)", \
                [(b"www-authenticate", challenge)]
        if not loopback_name(host_name(host)):
            return 403, (f"Host {host!r} is not a loopback name: without tokens the server "
                         "answers only http://127.0.0.1 or http://localhost"), []
        return LOCAL

    def scoped(self, scope: Scope, headers: dict[str, str], found: Token,
               session: str | None) -> Refusal | None:
        """The token's scope for this request, and the CSRF token of a browser's POST."""
        refused = found.refusal(required_scope(scope["method"], scope["path"]))
        if refused:
            return 403, refused, []
        if scope["method"] in ("GET", "HEAD"):
            return None
        scheme = (tokens.presented(headers.get("authorization", "")) or ("", ""))[0]
        browser = scheme == "basic" or session is not None
        given = headers.get(csrf.HEADER, "")
        if not browser and not given:
            return None
        key = csrf.key_of(found.secret, self.process_key)
        if not csrf.matches(key, found.name, session, given):
            return 403, ("the page's CSRF token is missing or does not match its session: "
                         "reload the page"), []
        return None


async def _refuse(send: Send, refused: Refusal) -> None:
    status, message, extra = refused
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *extra]})
    await send({"type": "http.response.body", "body": body})
