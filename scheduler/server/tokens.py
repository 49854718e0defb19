"""The server's tokens: each has a name, scopes and, optionally, the applications it may act on.

``FLEETSYNC_SERVER_TOKEN_FILE`` is read line by line (``#`` starts a comment):

    # a bare token, as before: every scope, every application, named token-line-2
    3f9c...e1
    # NAME scopes=SCOPE,... [apps=APP,...] TOKEN
    ops      scopes=read,sync,hold,rollout                 4b1d...77
    web-team scopes=read,sync apps=web,api                 9a0e...c2
    viewer   scopes=read                                   d5c8...10

Scopes: ``read`` (every GET: pages and the JSON API), ``sync`` (``POST
/api/v1/sync``), ``hold`` (suspend and resume), ``rollout`` (pause, resume,
promote, abort), ``preview`` (``POST /api/v1/previews``: read-only, it runs a
dry-run against the clusters). ``apps=`` limits the actions (POSTs) to those applications, by
name, as the fleet spec selects applications (``names``); reading is
fleet-wide. ``FLEETSYNC_SERVER_TOKEN_ENV`` names a variable holding one more
token: every scope, named after the variable.

A line that cannot be read is an error naming the file and line, never the
token; so are a name given twice and a token given twice. ``find`` compares the
presented value with every token in constant time, so the time taken says
nothing of which one matched.
"""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from shared.errors import FleetsyncError

SCOPES = ("read", "sync", "hold", "rollout", "preview")
MIN_TOKEN = 16                          # characters: a shorter token is refused
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
KEYS = ("scopes", "apps")


@dataclass(frozen=True)
class Token:
    """Who a request is: a token's name, what it may do, where."""

    name: str
    secret: str = field(repr=False)
    scopes: frozenset[str] = frozenset(SCOPES)
    apps: tuple[str, ...] | None = None         # None: every application

    def may(self, scope: str) -> bool:
        return scope in self.scopes

    def covers(self, app: str) -> bool:
        return self.apps is None or app in self.apps

    def refusal(self, scope: str, app: str | None = None) -> str:
        """Why this token may not do ``scope`` (on ``app``); "" when it may."""
        if not self.may(scope):
            have = ", ".join(s for s in SCOPES if s in self.scopes) or "none"
            return f"token {self.name} lacks the scope {scope!r} (it has: {have})"
        if app is not None and not self.covers(app):
            return (f"token {self.name} may not act on application {app!r} "
                    f"(its applications: {', '.join(self.apps or ())})")
        return ""


LOCAL = Token("local", "")              # no tokens configured: loopback only, every scope


def parse_line(text: str, where: str) -> Token | None:
    """One line of the token file as a ``Token`` (None: blank or comment); ``where`` is
    ``FILE line N`` for errors, which never quote the token."""
    fields = text.split("#", 1)[0].split()
    if not fields:
        return None
    if len(fields) == 1:
        return _checked(Token(f"token-line-{where.rsplit(' ', 1)[-1]}", fields[0]), where)
    name, *options, secret = fields
    if not NAME.match(name):
        raise FleetsyncError(f"{where}: the token's name must be letters, digits, '.', '_', "
                             "'@' or '-' (at most 64), then scopes=..., then the token")
    given: dict[str, str] = {}
    for option in options:
        key, eq, value = option.partition("=")
        if not eq or key not in KEYS:
            raise FleetsyncError(f"{where}: token {name}: {key!r} is not one of "
                                 f"scopes=, apps= (NAME scopes=read,sync [apps=A,B] TOKEN)")
        if key in given:
            raise FleetsyncError(f"{where}: token {name}: {key}= given twice")
        given[key] = value
    if "=" in secret:
        raise FleetsyncError(f"{where}: token {name}: the last field must be the token")
    if "scopes" not in given:
        raise FleetsyncError(f"{where}: token {name}: give scopes= (of {', '.join(SCOPES)})")
    scopes = _names(given["scopes"], where, name, "scopes")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise FleetsyncError(f"{where}: token {name}: unknown scope {unknown[0]!r} "
                             f"(one of {', '.join(SCOPES)})")
    apps = _names(given["apps"], where, name, "apps") if "apps" in given else None
    return _checked(Token(name, secret, frozenset(scopes), apps), where)


def _names(text: str, where: str, name: str, key: str) -> tuple[str, ...]:
    names = tuple(n for n in text.split(","))
    if not names or any(not n for n in names):
        raise FleetsyncError(f"{where}: token {name}: {key}= needs a comma-separated list "
                             "without empty entries")
    return names


def _checked(token: Token, where: str) -> Token:
    if "change-me" in token.secret.lower():
        raise FleetsyncError(f"{where}: token {token.name} still holds the example value "
                             "'change-me' from deploy/: make one with `openssl rand -hex 32`")
    if len(token.secret) < MIN_TOKEN:
        raise FleetsyncError(f"{where}: token {token.name} is shorter than {MIN_TOKEN} "
                             "characters: use e.g. `openssl rand -hex 32`")
    return token


def load(env: Mapping[str, str]) -> tuple[Token, ...]:
    """The tokens named by ``FLEETSYNC_SERVER_TOKEN_FILE`` and ``_TOKEN_ENV``."""
    found: list[Token] = []
    path = env.get("FLEETSYNC_SERVER_TOKEN_FILE")
    if path:
        try:
            lines = Path(path).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise FleetsyncError(f"FLEETSYNC_SERVER_TOKEN_FILE {path}: {why}") from exc
        for number, line in enumerate(lines, 1):
            token = parse_line(line, f"{path} line {number}")
            if token is not None:
                _add(found, token, f"{path} line {number}")
    name = env.get("FLEETSYNC_SERVER_TOKEN_ENV")
    if name:
        value = env.get(name, "").strip()
        if not value:
            raise FleetsyncError(f"FLEETSYNC_SERVER_TOKEN_ENV names {name}, which is not set")
        _add(found, _checked(Token(name, value), f"FLEETSYNC_SERVER_TOKEN_ENV {name}"),
             f"FLEETSYNC_SERVER_TOKEN_ENV {name}")
    return tuple(found)


def _add(found: list[Token], token: Token, where: str) -> None:
    for other in found:
        if other.name == token.name:
            raise FleetsyncError(f"{where}: a second token named {token.name}")
        if hmac.compare_digest(other.secret.encode(), token.secret.encode()):
            raise FleetsyncError(f"{where}: token {token.name} has the same value as token "
                                 f"{other.name}")
    found.append(token)


def presented(header: str) -> tuple[str, str] | None:
    """``(scheme, value)`` of an ``Authorization`` header: ``bearer`` or ``basic`` (the
    password of HTTP Basic, as a browser's login prompt sends it); None otherwise."""
    scheme, _, value = header.partition(" ")
    value, scheme = value.strip(), scheme.lower()
    if scheme == "basic":
        try:
            value = base64.b64decode(value, validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return None
    elif scheme != "bearer":
        return None
    return scheme, value


def find(value: str, tokens: Iterable[Token]) -> Token | None:
    """The token whose secret is ``value``: every token compared, in constant time each."""
    match = None
    for token in tokens:
        if hmac.compare_digest(value.encode(), token.secret.encode()) and value:
            match = token
    return match
