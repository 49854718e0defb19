"""One Redis lock per sync unit, renewed while work goes on, with fencing tokens.

A lock is ``SET key owner NX PX ttl``; renew and release compare the owner in
Lua, so a worker whose lock expired cannot extend or free someone else's. Each
acquisition also draws a fencing token: strictly increasing per unit and based
on the Redis server's clock, so it keeps increasing even after Redis is flushed.
The apply stage writes the token into the in-cluster inventory, which refuses a
smaller one.

Requests are coalesced. While a run of the unit is queued and has not taken
the lock, another request joins it (``enqueue_once`` hands back the queued
task id). A queued run that finds the unit locked sets a pending flag and
returns at once; the holder, when it finishes, sees the flag and runs once
more, and only then can a new run be queued. No worker slot waits on a lock,
and however many requests arrive, at most one run waits behind the current one.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator
from contextlib import contextmanager

from shared.errors import LockBusy

PREFIX = "fleetsync"

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_TOKEN = """
local t = redis.call('TIME')
local token = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if token <= last then token = last + 1 end
redis.call('SET', KEYS[1], token)
return token
"""


def unit_id(app: str, cluster: str) -> str:
    return f"{cluster}/{app}"


def lock_key(unit: str) -> str:
    return f"{PREFIX}:lock:{unit}"


def pending_key(unit: str) -> str:
    return f"{PREFIX}:pending:{unit}"


def queued_key(unit: str) -> str:
    return f"{PREFIX}:queued:{unit}"


@dataclass
class Lock:
    unit: str
    owner: str
    token: int
    ttl_ms: int
    acquired_at: float = field(default_factory=time.time)


class Locks:
    """Acquire, renew and release sync-unit locks on one Redis client."""

    def __init__(self, client: Any, ttl: float = 60.0) -> None:
        self.client = client
        self.ttl_ms = int(ttl * 1000)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._token = client.register_script(_TOKEN)

    def try_acquire(self, unit: str) -> Lock | None:
        owner = uuid.uuid4().hex
        if not self.client.set(lock_key(unit), owner, nx=True, px=self.ttl_ms):
            return None
        token = int(self._token(keys=[f"{PREFIX}:fence:{unit}"]))
        return Lock(unit, owner, token, self.ttl_ms)

    def acquire_or_coalesce(self, unit: str) -> Lock:
        """The lock, or ``LockBusy`` after leaving a pending flag for the holder."""
        lock = self.try_acquire(unit)
        if lock is None:
            self.client.set(pending_key(unit), "1", ex=max(60, self.ttl_ms // 1000 * 10))
            raise LockBusy(f"sync unit {unit} is being synced; this request was coalesced",
                           unit=unit)
        return lock

    def renew(self, lock: Lock) -> bool:
        return bool(self._renew(keys=[lock_key(lock.unit)], args=[lock.owner, lock.ttl_ms]))

    def release(self, lock: Lock) -> bool:
        """Release; True when a coalesced request asked for one more run."""
        self._release(keys=[lock_key(lock.unit)], args=[lock.owner])
        return bool(self.client.getdel(pending_key(lock.unit)))

    def enqueue_once(self, unit: str, task_id: str) -> str:
        """The apply task id that will serve a sync of ``unit``: ``task_id`` when
        nothing is queued yet (the caller sends it), else the one already queued."""
        key = queued_key(unit)
        ttl = max(60, self.ttl_ms // 1000 * 2)
        if self.client.set(key, task_id, nx=True, ex=ttl):
            return task_id
        return self.client.get(key) or task_id

    def started(self, unit: str) -> None:
        """The queued run has begun: the next request queues a new one."""
        self.client.delete(queued_key(unit))

    def next_token(self, unit: str) -> int:
        return int(self._token(keys=[f"{PREFIX}:fence:{unit}"]))

    @contextmanager
    def renewing(self, lock: Lock) -> Iterator[Lock]:
        """Keep ``lock`` alive (renew every third of its TTL) while the block runs."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(lock.ttl_ms / 3000):
                if not self.renew(lock):
                    return

        thread = threading.Thread(target=loop, name=f"renew {lock.unit}", daemon=True)
        thread.start()
        try:
            yield lock
        finally:
            stop.set()
            thread.join(timeout=5)
