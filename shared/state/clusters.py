"""Per-cluster back-off: one unreachable cluster costs one probe per interval, not one
retry chain per unit per beat tick.

When an apply (or the cluster pass, ``workers/run/sweep.py``) finds its cluster's
API server unreachable (connection refused) or not answering (a request timed
out: a frozen or overloaded server counts the same), the cluster is marked down with the time, the reason and when to try
next (5, 10, 20, 40, then every 60 s). Until then every unit of that cluster
waits without a request (its run is retried at the next-try time, still the
unit's one queued run). At the next-try time exactly one run claims the probe;
whatever it finds decides: success marks the cluster up, another failure moves
the next try further out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shared.state import keys
from shared.protocol import cluster_backoff

# Failures count once per probe (not once per unit that hit the outage at once).
_MARK_DOWN = """
local now = tonumber(ARGV[1])
local next_at = tonumber(redis.call('HGET', KEYS[1], 'next_at') or '0')
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if failures == 0 or now >= next_at then
  failures = failures + 1
  local delays = cjson.decode(ARGV[4])
  local delay = delays[math.min(failures, #delays)]
  redis.call('HSET', KEYS[1], 'failures', failures, 'next_at', tostring(now + delay),
             'error', ARGV[2], 'server', ARGV[3])
  redis.call('HSETNX', KEYS[1], 'since', ARGV[1])
  redis.call('DEL', KEYS[2])
end
return redis.call('HGET', KEYS[1], 'next_at')
"""
_DELAYS = [cluster_backoff(n) for n in range(1, 6)]


@dataclass(frozen=True)
class Down:
    cluster: str
    since: float
    next_at: float
    error: str
    server: str
    failures: int

    def message(self, now: float | None = None) -> str:
        wait = max(0, round(self.next_at - (now or time.time())))
        since = datetime.fromtimestamp(self.since, timezone.utc).strftime("%H:%M:%S")
        what = "does not answer" if self.error.startswith("timed out") else "unreachable"
        return (f"cluster {self.cluster} {what}: {self.error} at {self.server} "
                f"since {since} UTC; next try in {wait} s")


class ClusterHealth:
    """Down records of clusters, on a decoded Redis client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._mark = client.register_script(_MARK_DOWN)

    def down(self, cluster: str) -> Down | None:
        raw = self.client.hgetall(keys.cluster_down(cluster))
        if not raw:
            return None
        return Down(cluster, float(raw.get("since", 0)), float(raw.get("next_at", 0)),
                    raw.get("error", ""), raw.get("server", ""), int(raw.get("failures", 0)))

    def mark_down(self, cluster: str, server: str, error: str) -> Down:
        import json

        self._mark(keys=[keys.cluster_down(cluster), keys.cluster_probe(cluster)],
                   args=[repr(time.time()), error, server, json.dumps(_DELAYS)])
        found = self.down(cluster)
        assert found is not None
        return found

    def mark_up(self, cluster: str) -> bool:
        """True when the cluster was down until now."""
        return bool(self.client.delete(keys.cluster_down(cluster), keys.cluster_probe(cluster)))

    def claim_probe(self, cluster: str, ttl: float) -> bool:
        """True for exactly one caller per next-try time: that run probes the cluster."""
        return bool(self.client.set(keys.cluster_probe(cluster), "1", nx=True,
                                    px=max(1, int(ttl * 1000))))
