"""Prometheus metrics of the workers, safe across Celery's prefork processes.

Every metric is declared here, once. When ``PROMETHEUS_MULTIPROC_DIR`` is set
(``fleetsync worker`` sets it to a fresh directory when it is not), each pool
process writes its samples there and ``serve`` exposes the merged view from the
worker's main process.

``fleetsync_sync_ready`` is not a per-process gauge: it is read from the units'
status in Redis at scrape time, so every worker reports the same fleet-wide
truth, whichever worker (or CLI) synced a unit last.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

reconcile_duration = Histogram(
    "fleetsync_reconcile_duration_seconds", "Time spent in one stage of a sync unit.",
    ["stage"], buckets=_BUCKETS)
source_fetch_duration = Histogram(
    "fleetsync_source_fetch_duration_seconds", "Time to fetch a Git source.",
    ["source"], buckets=_BUCKETS)
drift_corrections = Counter(
    "fleetsync_drift_corrections_total", "Objects whose live state drifted from Git and was corrected.")
apply_objects = Counter(
    "fleetsync_apply_objects_total", "Objects handled by apply, by action.", ["action"])
lock_wait = Histogram(
    "fleetsync_lock_wait_seconds", "Time from a sync request being queued to its unit's lock.",
    buckets=_BUCKETS)
task_failures = Counter(
    "fleetsync_task_failures_total", "Failed task runs, by stage and reason.", ["stage", "reason"])


def registry() -> CollectorRegistry:
    """The registry to expose: merged across processes in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        return reg
    from prometheus_client import REGISTRY

    return REGISTRY


class ReadinessCollector:
    """``fleetsync_sync_ready{cluster,app}`` from the status of every unit in Redis."""

    def __init__(self, statuses: Callable[[], Iterable[Any]]) -> None:
        self.statuses = statuses

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("fleetsync_sync_ready", "1 when the sync unit is Ready, else 0.",
                                   labels=["cluster", "app"])
        try:
            for status in self.statuses():
                family.add_metric([status.cluster, status.app], 1 if status.phase == "Ready" else 0)
        except Exception:  # Redis away: expose no readiness rather than fail the scrape
            return
        yield family


def serve(port: int, statuses: Callable[[], Iterable[Any]] | None = None,
          addr: str = "0.0.0.0") -> Any:
    reg = registry()
    if statuses is not None:
        reg.register(ReadinessCollector(statuses))  # type: ignore[arg-type]
    return start_http_server(port, addr=addr, registry=reg)


def mark_process_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def record_apply(counts: dict[str, int], drift: int) -> None:
    for action, n in counts.items():
        if n:
            apply_objects.labels(action).inc(n)
    if drift:
        drift_corrections.inc(drift)
