"""Beat's schedule, built from the fleet spec and kept in step with it.

``entries(fleet)`` is pure: one ``fleetsync.reconcile_cluster`` per cluster at
its interval and one ``fleetsync.fetch_source`` per source at its interval. Image
policies are grouped by interval: the policies due at one tick go in one
``fleetsync.scan_images``, which also commits their choices; each Git source with
``imageUpdates`` gets one more at its own ``imageUpdates.interval`` (no scan, only
the commit of what the records hold), so a source picks up tags that other
sources' passes recorded.
``FleetScheduler`` re-reads the spec when the file changes (every few seconds
at most), so a cluster added or removed is picked up without restarting beat.
A spec that does not validate schedules nothing new: the last good schedule
stays, and the problems are logged.

Every tick also records beat's heartbeat in Redis (``shared/state/heartbeat.py``, at
most once a second): a silent beat is otherwise invisible, since nothing fails
when nothing is scheduled.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

from celery.beat import Scheduler

from shared import tasks_api
from shared.state.heartbeat import Heartbeat
from shared.logs import get_logger
from shared.state.redisconn import connect
from shared.settings import from_env
from shared.spec.model import Fleet
from shared.spec.watch import SpecWatcher

log = get_logger("fleetsync.beat")
SPEC_CHECK_SECONDS = 3.0


def entries(fleet: Fleet) -> dict[str, dict[str, Any]]:
    """The beat entries a fleet spec asks for, by entry name."""
    out: dict[str, dict[str, Any]] = {}
    for cluster in fleet.clusters.values():
        if fleet.applications_for(cluster):
            out[f"reconcile:{cluster.name}"] = _entry(
                tasks_api.RECONCILE_CLUSTER, [cluster.name], cluster.interval)
    used = {app.source for app in fleet.applications.values() if not app.suspend}
    for source in fleet.sources.values():
        if source.name in used:
            out[f"fetch:{source.name}"] = _entry(tasks_api.FETCH_SOURCE, [source.name],
                                                 source.interval)
    out.update(image_entries(fleet))
    return out


def image_entries(fleet: Fleet) -> dict[str, dict[str, Any]]:
    """``fleetsync.scan_images`` per policy interval, and per image source (pure)."""
    out: dict[str, dict[str, Any]] = {}
    by_interval: dict[float, list[str]] = {}
    for policy in fleet.images:
        by_interval.setdefault(policy.interval, []).append(policy.name)
    for interval, names in sorted(by_interval.items()):
        out[f"images:{interval:g}s"] = _entry(tasks_api.SCAN_IMAGES, [names], interval,
                                              {"trigger": "beat"})
    for source in fleet.sources.values():
        updates = source.image_updates
        if updates is not None and not source.helm_repository and not source.oci_artifact:
            out[f"image-updates:{source.name}"] = _entry(
                tasks_api.SCAN_IMAGES, [[]], updates.interval,
                {"sources": [source.name], "trigger": "beat"})
    return out


def _entry(task: str, args: list[Any], interval: float,
           kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    shown = {"trigger": "beat", **(kwargs or {})}
    return {"task": task, "schedule": timedelta(seconds=interval), "args": args,
            "kwargs": dict(kwargs or {}),
            "options": {"expires": max(interval, 5.0),
                        "argsrepr": tasks_api.describe(task, args, shown)}}


def first_run_offset(interval: float, rng: random.Random = random._inst) -> float:  # type: ignore[attr-defined]
    """Seconds until a new entry first runs: soon, but spread so clusters don't fire together."""
    return rng.uniform(0.0, min(interval * 0.1, 5.0))


class FleetScheduler(Scheduler):
    """A Celery beat scheduler whose entries come from ``FLEETSYNC_FLEET``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = from_env()
        self._watcher = SpecWatcher(settings.fleet_path, check_every=SPEC_CHECK_SECONDS)
        self._heartbeat = Heartbeat(lambda: connect(settings.redis_url))
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        self._reload_spec()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._heartbeat.tick()
        self._reload_spec(force=False)
        return min(super().tick(*args, **kwargs), SPEC_CHECK_SECONDS)

    def _reload_spec(self, force: bool = True) -> None:
        fleet, changed, error = self._watcher.poll(force)
        if error is not None:
            log.error("fleet spec invalid or unreadable; keeping the last schedule",
                      problems=error.problems)
        if fleet is not None and changed:
            self._merge(entries(fleet))

    def _merge(self, wanted: dict[str, dict[str, Any]]) -> None:
        now = datetime.now(timezone.utc)
        for name in list(self.schedule):
            if name not in wanted:
                del self.schedule[name]
        for name, spec in wanted.items():
            if name in self.schedule:
                self.schedule[name].update(self.Entry(**dict(spec, name=name, app=self.app)))
                continue
            interval = spec["schedule"].total_seconds()
            last = now - timedelta(seconds=interval - first_run_offset(interval))
            self.schedule[name] = self.Entry(**dict(spec, name=name, app=self.app, last_run_at=last))
        log.info("schedule updated", entries=sorted(self.schedule))
