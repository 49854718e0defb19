"""Prometheus metrics of the workers, safe across Celery's prefork processes.

Every metric is declared here, once. When ``PROMETHEUS_MULTIPROC_DIR`` is set
(``fleetsync worker`` sets it to a fresh directory when it is not), each pool
process writes its samples there and ``serve`` exposes the merged view from the
worker's main process.

The fleet's state is not made of per-process gauges: ``ReadinessCollector``
reads it from Redis at scrape time, so every worker reports the same fleet-wide
truth, whichever worker (or CLI) synced a unit last:

    fleetsync_sync_ready{cluster,app}                           1 when Ready
    fleetsync_unit_last_success_timestamp_seconds{cluster,app}  the last run that applied
    fleetsync_unit_interval_seconds{cluster,app}                the unit's reconcile interval
    fleetsync_beat_last_tick_timestamp_seconds                  beat's heartbeat

A unit that never applied has no last-success sample, and one whose interval
is unknown (0) no interval sample, so ``FleetsyncUnitStale`` (last success
older than 3 intervals) never fires on a guess; ``FleetsyncSyncNotReady``
covers units that never got anywhere. Beat's series is absent until beat
first ticks, which ``FleetsyncBeatSilent`` reports with ``absent()``.
"""

from __future__ import annotations

import os
from datetime import datetime
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
refused = Counter(
    "fleetsync_refused_total", "Render entries and tasks refused as changed or forged, by what.",
    ["what"])
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
    """The fleet's state from Redis: every unit's readiness, last success and interval, and
    beat's last tick (see the module docstring)."""

    def __init__(self, statuses: Callable[[], Iterable[Any]],
                 beat_tick: Callable[[], float | None] | None = None) -> None:
        self.statuses = statuses
        self.beat_tick = beat_tick

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._units()
        yield self._beat()

    def _units(self) -> list[GaugeMetricFamily]:
        labels = ["cluster", "app"]
        ready = GaugeMetricFamily("fleetsync_sync_ready", "1 when the sync unit is Ready, else 0.",
                                  labels=labels)
        success = GaugeMetricFamily(
            "fleetsync_unit_last_success_timestamp_seconds",
            "When the sync unit's last run that reached its cluster ended (Ready, Progressing "
            "or Degraded); absent for a unit that never did.", labels=labels)
        interval = GaugeMetricFamily(
            "fleetsync_unit_interval_seconds",
            "The sync unit's reconcile interval (its cluster's); absent while unknown.",
            labels=labels)
        try:
            for status in self.statuses():
                unit = [status.cluster, status.app]
                ready.add_metric(unit, 1 if status.phase == "Ready" else 0)
                stamp = epoch_seconds(status.last_success_at)
                if stamp is not None:
                    success.add_metric(unit, stamp)
                if status.interval > 0:
                    interval.add_metric(unit, status.interval)
        except Exception:  # Redis away: expose no unit rather than fail the scrape
            return []
        return [ready, success, interval]

    def _beat(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "fleetsync_beat_last_tick_timestamp_seconds",
            "When beat last ticked (it writes this at most once a second); absent until it does.")
        try:
            tick = self.beat_tick() if self.beat_tick is not None else None
        except Exception:  # Redis away: no sample, as if beat never ticked
            tick = None
        if tick is not None:
            family.add_metric([], tick)
        return family


def epoch_seconds(stamp: str) -> float | None:
    """An ISO timestamp as stored in status (``2025-01-02T03:04:05.000Z``) as epoch seconds."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def serve(port: int, statuses: Callable[[], Iterable[Any]] | None = None,
          addr: str = "0.0.0.0", beat_tick: Callable[[], float | None] | None = None) -> Any:
    """Serve ``/metrics``; with ``statuses`` (and ``beat_tick``), the fleet's state read
    from Redis too."""
    reg = registry()
    if statuses is not None:
        reg.register(ReadinessCollector(statuses, beat_tick))  # type: ignore[arg-type]
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
