"""Beat's schedule, built from the fleet spec and kept in step with it.

``entries(fleet)`` is pure: one ``fleetsync.reconcile_cluster`` per cluster at
its interval and one ``fleetsync.fetch_source`` per source at its interval.
``FleetScheduler`` re-reads the spec when the file changes (every few seconds
at most), so a cluster added or removed is picked up without restarting beat.
A spec that does not validate schedules nothing new: the last good schedule
stays, and the problems are logged.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from celery.beat import Scheduler

from shared.errors import SpecError
from shared.logs import get_logger
from shared.settings import from_env
from shared.spec import Fleet, load_fleet

log = get_logger("fleetsync.beat")
SPEC_CHECK_SECONDS = 3.0


def entries(fleet: Fleet) -> dict[str, dict[str, Any]]:
    """The beat entries a fleet spec asks for, by entry name."""
    out: dict[str, dict[str, Any]] = {}
    for cluster in fleet.clusters.values():
        if fleet.applications_for(cluster):
            out[f"reconcile:{cluster.name}"] = _entry(
                "fleetsync.reconcile_cluster", [cluster.name], cluster.interval)
    used = {app.source for app in fleet.applications.values() if not app.suspend}
    for source in fleet.sources.values():
        if source.name in used:
            out[f"fetch:{source.name}"] = _entry("fleetsync.fetch_source", [source.name],
                                                 source.interval)
    return out


def _entry(task: str, args: list[str], interval: float) -> dict[str, Any]:
    return {"task": task, "schedule": timedelta(seconds=interval), "args": args,
            "options": {"expires": max(interval, 5.0)}}


def first_run_offset(interval: float, rng: random.Random = random._inst) -> float:  # type: ignore[attr-defined]
    """Seconds until a new entry first runs: soon, but spread so clusters don't fire together."""
    return rng.uniform(0.0, min(interval * 0.1, 5.0))


class FleetScheduler(Scheduler):
    """A Celery beat scheduler whose entries come from ``FLEETSYNC_FLEET``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._spec_mtime: float | None = None
        self._spec_checked = 0.0
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        self._reload_spec(force=True)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if time.monotonic() - self._spec_checked >= SPEC_CHECK_SECONDS:
            self._reload_spec()
        return min(super().tick(*args, **kwargs), SPEC_CHECK_SECONDS)

    def _reload_spec(self, force: bool = False) -> None:
        self._spec_checked = time.monotonic()
        path = from_env().fleet_path
        if not path:
            log.error("no fleet spec: set FLEETSYNC_FLEET")
            return
        try:
            mtime = Path(path).stat().st_mtime
        except OSError as exc:
            log.error("fleet spec unreadable", path=path, error=exc.strerror)
            return
        if not force and mtime == self._spec_mtime:
            return
        self._spec_mtime = mtime
        try:
            fleet = load_fleet(path)
        except SpecError as exc:
            log.error("fleet spec invalid; keeping the last schedule", problems=exc.problems)
            return
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
