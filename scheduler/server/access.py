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
"""

from __future__ import annotations

import base64
import hmac
import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from scheduler.server.config import ServerSettings, is_loopback

OPEN_PREFIXES = ("/hooks/", "/healthz")


def token_ok(header: str, tokens: frozenset[str]) -> bool:
    """Whether an ``Authorization`` header carries one of ``tokens`` (pure)."""
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value, validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    found = False
    for token in tokens:        # every token compared: the time says nothing of which
        found |= hmac.compare_digest(value.encode(), token.encode())
    return found


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        refused = self.refusal(scope, headers)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, message, extra = refused
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *extra]})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: Scope, headers: dict[str, str]
                ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        host = headers.get("host", "")
        origin = headers.get("origin", "")
        if scope["method"] not in ("GET", "HEAD") and origin and \
                not same_origin(origin, scope.get("scheme", "http"), host):
            return 403, "requests from pages of another origin are refused", []
        if self.server.tokens:
            if token_ok(headers.get("authorization", ""), self.server.tokens):
                return None
            challenge = b'Bearer realm="fleetsync"' if scope["path"].startswith("/api/") \
                else b'Basic realm="fleetsync", charset="UTF-8"'
            return 401, "a token is required (Authorization: Bearer TOKEN)", \
                [(b"www-authenticate", challenge)]
        if not loopback_name(host_name(host)):
            return 403, (f"Host {host!r} is not a loopback name: without tokens the server "
                         "answers only http://127.0.0.1 or http://localhost"), []
        return None
