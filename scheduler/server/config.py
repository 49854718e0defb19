"""The server's settings, built once at its edge from the environment and the command line.

Tokens are never given on the command line or in the spec:
``FLEETSYNC_SERVER_TOKEN_FILE`` names a file of tokens (one per line, ``#``
comments; a name, scopes and applications each: ``tokens.py``) and ``FLEETSYNC_SERVER_TOKEN_ENV`` the name of a variable that holds
one (a Kubernetes Secret mounted as a file or passed as a variable). Webhook
secrets are named per source in the fleet spec and read from the server's
environment when a webhook arrives.

Without a token the server answers on loopback only, as Flower does:
``check_exposure`` refuses any other address before anything listens.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Mapping

from scheduler.server import tokens
from scheduler.server.tokens import Token
from shared.errors import FleetsyncError
from shared.settings import Settings
from shared.settings import from_env as shared_settings

DEFAULT_PORT = 8085
DEFAULT_MAX_BODY = 1024 * 1024          # push payloads are far smaller; GitHub's cap is 25 MB
DELIVERY_TTL = 3600.0                   # a delivery id is remembered this long (replays)
FETCH_WANTED_TTL = 120.0                # a queued fetch that never began is asked again after
FOLLOW_UP_TIMEOUT = 60.0                # priority syncs wait this long for the fetch's revision


@dataclass(frozen=True)
class ServerSettings:
    settings: Settings
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tokens: tuple[Token, ...] = ()
    max_body: int = DEFAULT_MAX_BODY
    refresh_s: float = 5.0              # how often an open page asks for fresh content
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    base_url: str = ""                  # FLEETSYNC_SERVER_URL: how forges' users reach us

    @property
    def public_url(self) -> str:
        """The dashboard's address in links posted elsewhere (a pull request's status)."""
        return self.base_url.rstrip("/") or f"http://{self.host}:{self.port}"

    @property
    def flower_url(self) -> str | None:
        return self.settings.flower_url


def from_env(host: str, port: int, env: Mapping[str, str] | None = None) -> ServerSettings:
    """Settings from ``FLEETSYNC_*`` variables; ``FleetsyncError`` naming a bad one."""
    env = dict(os.environ if env is None else env)
    try:
        max_body = int(env.get("FLEETSYNC_SERVER_MAX_BODY") or DEFAULT_MAX_BODY)
        refresh = float(env.get("FLEETSYNC_SERVER_REFRESH") or 5.0)
    except ValueError as exc:
        raise FleetsyncError(f"FLEETSYNC_SERVER_MAX_BODY / FLEETSYNC_SERVER_REFRESH: {exc}") \
            from exc
    return ServerSettings(shared_settings(env), host, port, load_tokens(env), max_body,
                          refresh, env, env.get("FLEETSYNC_SERVER_URL", ""))


def load_tokens(env: Mapping[str, str]) -> tuple[Token, ...]:
    """The tokens named by ``FLEETSYNC_SERVER_TOKEN_FILE`` and ``_TOKEN_ENV`` (``tokens.py``)."""
    return tokens.load(env)


def example(value: str) -> bool:
    """Whether ``value`` is one of deploy/'s example credentials (they contain change-me)."""
    return "change-me" in value.lower()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(server: ServerSettings) -> None:
    """Refuse to listen beyond loopback without tokens."""
    if not server.tokens and not is_loopback(server.host):
        raise FleetsyncError(
            f"fleetsync server on {server.host} would be reachable beyond loopback without "
            "authentication: set FLEETSYNC_SERVER_TOKEN_FILE (a file of bearer tokens) or "
            "FLEETSYNC_SERVER_TOKEN_ENV (the name of a variable holding one), or use "
            "--host 127.0.0.1")
