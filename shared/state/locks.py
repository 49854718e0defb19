"""The one lease implementation: ``SET key owner NX PX``, renewed and released only by
its owner (compare in Lua), so a holder whose lease expired cannot extend or free
someone else's.

Sync-unit locks are taken inside the protocol's compare-and-set
(``shared/state/runs.py``) and renewed here; the render cache's single-flight builds
take and release leases here.
"""

from __future__ import annotations

from typing import Any

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases:
    """Leases on one Redis client (decoded or not)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self, key: str, owner: str, ttl_ms: int) -> bool:
        return bool(self.client.set(key, owner, nx=True, px=max(1, ttl_ms)))

    def renew(self, key: str, owner: str, ttl_ms: int) -> bool:
        return bool(self._renew(keys=[key], args=[owner, max(1, ttl_ms)]))

    def release(self, key: str, owner: str) -> bool:
        return bool(self._release(keys=[key], args=[owner]))
