"""The dashboard's CSRF token: a session cookie and an HMAC bound to it and to the caller's token.

A browser sends its credentials by itself (HTTP Basic, once asked; cookies),
so a POST that carries them must also prove it comes from one of the
server's own pages. Each browser gets a random session id in the cookie
``fleetsync_session`` (``SameSite=Strict; HttpOnly; Path=/``, ``Secure`` when
the server is reached by https); each page embeds
``HMAC-SHA256(key, caller name, session id)`` and the page's script sends it
back in the ``X-Fleetsync-CSRF`` header. A page of another site can neither
read the page nor compute the HMAC, even if it manages to plant a cookie.

The key is derived from the caller's token (every replica of the server
knows it, nobody else does), or, without tokens (loopback only), from a
random key of this process. Scripts authenticate with ``Authorization:
Bearer``, which no browser adds by itself: their POSTs need no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

COOKIE = "fleetsync_session"
HEADER = "x-fleetsync-csrf"
_SESSION = re.compile(r"^[A-Za-z0-9_-]{43}$")


def new_session() -> str:
    return secrets.token_urlsafe(32)


def session_of(cookie_header: str) -> str | None:
    """The valid session id in a ``Cookie`` header, None when there is none."""
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and _SESSION.match(value):
            return value
    return None


def key_of(secret: str, process_key: bytes) -> bytes:
    """The HMAC key for a caller holding ``secret`` ("" without tokens)."""
    if not secret:
        return process_key
    return hashlib.sha256(b"fleetsync-csrf\0" + secret.encode()).digest()


def value(key: bytes, who: str, session: str) -> str:
    return hmac.new(key, f"{who}\0{session}".encode(), hashlib.sha256).hexdigest()


def matches(key: bytes, who: str, session: str | None, given: str) -> bool:
    if not session or not given:
        return False
    return hmac.compare_digest(value(key, who, session).encode(), given.encode())


def set_cookie(session: str, secure: bool) -> bytes:
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict{flags}".encode()
