"""A worker process keeps TLS connections only to the clusters it is serving: each idle
one costs about 58 KB of OpenSSL's memory, so kept for every cluster it grew the
workers' memory with the fleet (bench/results/worker_tracemalloc.md). Against real
API servers: a cluster's pooled connections are closed once it has made no request for
``IDLE_CLOSE`` seconds, a busy cluster's are kept, and a closed one's client connects
again on its next request."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest

from shared.settings import Settings
from shared.spec.model import Cluster
from workers import context
from workers.context import Context

pytestmark = pytest.mark.k8s
IDLE = 1.0


def pooled(kube) -> int:
    """Connections kept in the client's pools (idle, ready for reuse)."""
    pools = kube.api.rest_client.pool_manager.pools
    return sum(pools[key].pool.qsize() - pools[key].pool.queue.count(None)
               for key in pools.keys())


def until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_an_idle_clusters_connections_are_closed_and_reopened(
        dev_fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "IDLE_CLOSE", IDLE)
    ctx = Context.connect(Settings(cache_dir=tmp_path), use_redis=False)
    idle = Cluster("dev-1", kubeconfig=str(dev_fleet.clusters["dev-1"]))
    busy = Cluster("dev-2", kubeconfig=str(dev_fleet.clusters["dev-2"]))
    first = ctx.kube(idle)
    first.get("/api/v1/namespaces/default")
    assert pooled(first) == 1
    started = time.monotonic()

    def served() -> bool:                       # dev-2 keeps making requests
        ctx.kube(busy).get("/api/v1/namespaces/default")
        return pooled(first) == 0

    until("dev-1's connection closed", served)
    assert time.monotonic() - started >= IDLE
    assert pooled(ctx.kube(busy)) == 1

    again = ctx.kube(idle)                      # the same client, connecting again
    assert again is first
    assert again.session().get("/api/v1/namespaces/default")["metadata"]["name"] == "default"
    assert pooled(again) == 1
    assert not again.close_if_idle(IDLE)        # it has just made a request
