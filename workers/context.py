"""The composition root of a worker process (or of ``fleetsync sync --local``).

One ``Context`` per process holds the clients every stage uses, built once
from ``Settings``: Redis (status, protocol, render cache), Git mirrors, the fleet
spec watcher and one Kubernetes client per cluster. ``--local`` runs against an
in-process Redis (fakeredis, with Lua) instead of the real one: the same code
paths and the same protocol, so nothing branches on "is there a Redis?".
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from shared.state.clusters import ClusterHealth
from shared.state.redisconn import connect
from shared.state.runs import Runs, Timing
from shared.settings import Settings, from_env
from shared.spec.model import Cluster, Fleet
from shared.spec.watch import SpecWatcher
from shared.state.status import StatusStore
from workers.fetch.gitsource import SourceCache
from workers.fetch.ociartifact import OciArtifacts
from workers import sealing
from workers.render.cache import RenderCache
from workers.sealing import Sealer

# Kubernetes clients kept per process (the least recently used go). A connected client
# holds about 50 KB (mostly its TLS connection pool), and one rebuilt costs about 7 ms of
# CPU, no API request. A cluster's units arrive together (one reconcile fans out its
# applications), so a few dozen clients serve any fleet; 256 cost 12 MB per process.
MAX_CLIENTS = 64
# A client's idle TLS connections cost about 58 KB each of OpenSSL's memory (tracemalloc
# does not see it): kept for every cluster a process has served, they made its memory grow
# with the fleet. A cluster's connections are closed once it has made no request for this
# long: a burst (a reconcile's units, a health wait's polls) keeps them, and a pass an
# interval later connects again (one TLS handshake; a no-op pass mostly makes no request).
IDLE_CLOSE = 10.0


def queued_timeout(settings: Settings) -> float:
    """How long a queued run may go without beginning a stage before it is presumed lost
    (its task died with a worker, or with a Redis restart) and the next request queues a
    new one: three lock lifetimes, at least a minute. A slow queue only costs a run that
    is superseded (dropped when it is delivered), never two applies at once."""
    return max(60.0, 3 * settings.lock_ttl)


@dataclass
class Context:
    settings: Settings
    redis: Any                      # decoded client
    raw: Any                        # bytes client, for the render cache
    local: bool = False             # an in-process Redis: nothing is shared with workers
    _kubes: "OrderedDict[str, Any]" = field(default_factory=OrderedDict, init=False)
    _swept: float = field(default=0.0, init=False)

    @classmethod
    def connect(cls, settings: Settings, use_redis: bool = True) -> "Context":
        if use_redis:
            return cls(settings, connect(settings.redis_url), connect(settings.redis_url, False))
        import fakeredis

        server = fakeredis.FakeServer()
        return cls(settings, fakeredis.FakeRedis(server=server, decode_responses=True),
                   fakeredis.FakeRedis(server=server), local=True)

    @cached_property
    def sources(self) -> SourceCache:
        return SourceCache(self.settings.cache_dir / "git",
                           allow_local=self.settings.allow_local_sources)

    @cached_property
    def artifacts(self) -> OciArtifacts:
        """This host's OCI artifacts of ``oci:`` sources (``workers.fetch.ociartifact``)."""
        return OciArtifacts(self.settings.cache_dir / "oci")

    @cached_property
    def sealer(self) -> Sealer:
        """This worker's key: render entries sealed, internal tasks signed."""
        return sealing.load(self.settings.cache_key_file, self.settings.cache_dir)

    @cached_property
    def cache(self) -> RenderCache:
        return RenderCache(self.raw, self.settings.render_cache_ttl, sealer=self.sealer)

    @cached_property
    def status(self) -> StatusStore:
        return StatusStore(self.redis, self.settings.history_size)

    @cached_property
    def runs(self) -> Runs:
        return Runs(self.redis, Timing(lock_ms=int(self.settings.lock_ttl * 1000),
                                       queued_ms=int(queued_timeout(self.settings) * 1000),
                                       history_size=self.settings.history_size))

    @cached_property
    def clusters(self) -> ClusterHealth:
        return ClusterHealth(self.redis)

    @cached_property
    def watcher(self) -> SpecWatcher:
        return SpecWatcher(self.settings.fleet_path)   # one stat per look: never stale

    def fleet(self) -> Fleet:
        """The fleet spec, re-read when the file changes."""
        return self.watcher.load()

    def kube(self, cluster: Cluster) -> Any:
        from workers.apply.kube import Kube

        key = f"{cluster.name}|{cluster.kubeconfig}|{cluster.context}"
        now = time.monotonic()
        if now - self._swept > IDLE_CLOSE / 4:
            self._swept = now
            for client in list(self._kubes.values()):
                client.close_if_idle(IDLE_CLOSE)
        if key in self._kubes:
            self._kubes.move_to_end(key)
            return self._kubes[key]
        client = Kube.from_kubeconfig(cluster.kubeconfig, cluster.context, name=cluster.name)
        self._kubes[key] = client
        while len(self._kubes) > MAX_CLIENTS:
            self._kubes.popitem(last=False)[1].close()
        return client


@lru_cache(maxsize=1)
def process_context() -> Context:
    """This worker process's clients, built once from the environment (the tasks and
    the prefork warm-up share it)."""
    return Context.connect(from_env())
