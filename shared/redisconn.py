"""Redis connections: the one place that builds ``redis.Redis`` clients.

URLs may carry a password and TLS (``rediss://``); neither is ever logged.
Two flavours: decoded (str) for status, history and locks; raw (bytes) for the
compressed render cache.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlparse, urlunparse

import redis



@lru_cache(maxsize=8)
def connect(url: str, decode: bool = True) -> Any:
    return redis.Redis.from_url(url, decode_responses=decode, socket_timeout=10,
                                socket_connect_timeout=5, health_check_interval=30,
                                retry_on_timeout=True)


def reachable(url: str) -> bool:
    try:
        return bool(connect(url).ping())
    except redis.RedisError:
        return False


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = f"{parsed.username or ''}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
    return urlunparse(parsed._replace(netloc=netloc))



RedisError = redis.RedisError
