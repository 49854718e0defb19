"""Redis connections: the one place that builds ``redis.Redis`` clients.

URLs may carry a password and TLS (``rediss://``); neither is ever logged.
Two flavours: decoded (str) for status, history and locks; raw (bytes) for the
compressed render cache. A Sentinel URL (see ``shared.state.redis_url``) gives a
client of the primary the sentinels name: its pool asks them again whenever a
connection is made, so after a failover the same client (scripts and
pipelines too) follows the promoted replica; calls that fail meanwhile raise
``RedisError`` like a restart of one Redis would.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import redis
from redis.sentinel import Sentinel

from shared.state.redis_url import SENTINEL_TIMEOUTS, RedisURLError, parse, redact

__all__ = ["RedisError", "RedisURLError", "connect", "reachable", "redact"]

_OPTIONS: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5,
                            "health_check_interval": 30, "retry_on_timeout": True}


@lru_cache(maxsize=8)
def connect(url: str, decode: bool = True) -> Any:
    """A client of the Redis ``url`` names (raises ``RedisURLError`` for a bad URL)."""
    target = parse(url)
    if not target.is_sentinel:
        return redis.Redis.from_url(url, decode_responses=decode, **_OPTIONS)
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=dict(SENTINEL_TIMEOUTS),
                        db=target.db, username=target.username, password=target.password,
                        **_OPTIONS)
    return sentinel.master_for(target.master, decode_responses=decode)


def reachable(url: str) -> bool:
    try:
        return bool(connect(url).ping())
    except redis.RedisError:
        return False


RedisError = redis.RedisError
