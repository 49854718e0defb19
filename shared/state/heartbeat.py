"""Beat's heartbeat in Redis: the proof, fleet-wide, that something still schedules.

A stopped beat is silent: no task fails, no status changes, units just stop
being reconciled. So beat writes the time of its last tick under
``keys.BEAT_LAST_TICK`` (at most once per ``every`` seconds), and the workers'
metrics read it back at scrape time as
``fleetsync_beat_last_tick_timestamp_seconds`` (``shared/metrics.py``), which
the ``FleetsyncBeatSilent`` alert watches.

The heartbeat must never stop beat itself: a Redis error is logged and the
next write is tried ``backoff`` seconds later (beat's own sends will report a
Redis outage loudly enough). The key has no expiry: an old value says when
beat was last seen, which is what an operator wants to know.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from shared.state import keys
from shared.logs import get_logger
from shared.state.redisconn import RedisError

log = get_logger("fleetsync.heartbeat")


class Heartbeat:
    """Writes beat's last tick, throttled, never raising on a Redis error."""

    def __init__(self, client: Callable[[], Any], every: float = 1.0, backoff: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client          # called when needed: beat connects to Redis lazily
        self.every = every
        self.backoff = backoff
        self._clock = clock
        self._next = 0.0
        self._failing = False

    def tick(self) -> bool:
        """Record now as beat's last tick unless one was recorded less than ``every`` ago."""
        now = self._clock()
        if now < self._next:
            return False
        try:
            self._client().set(keys.BEAT_LAST_TICK, repr(now))
        except (RedisError, OSError, ValueError) as err:   # ValueError: a URL redis refuses
            self._next = now + self.backoff
            self._failing = True
            log.warning("could not record beat's tick in Redis; trying again later",
                        error=str(err), retry_in_s=self.backoff)
            return False
        if self._failing:
            log.info("beat's tick recorded in Redis again")
            self._failing = False
        self._next = now + self.every
        return True


def last_tick(client: Any) -> float | None:
    """Epoch seconds of beat's last recorded tick, or None when beat never ticked here."""
    raw = client.get(keys.BEAT_LAST_TICK)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None
