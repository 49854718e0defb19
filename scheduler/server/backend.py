"""The server's adapters: Redis (status, history, sources), the fleet spec, the broker.

One ``Backend`` per server process, shared by every request. Reads are
pipelined: a page of the whole fleet is one SMEMBERS and one pipeline of
HGETALLs, plus one pipeline for the sources, whatever the size of the fleet.
Tasks are sent by name through the scheduler's Celery app, which refuses
anything but the public names and beat's (``scheduler/app.py``): the server
can request syncs and fetches, never a render or an apply.

The calls block (redis-py, kombu); the web layer runs them in its thread pool.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from shared.state import keys
from shared.celery_app import send
from shared.errors import SpecError
from shared.logs import get_logger
from shared.state.redisconn import connect
from shared.spec.model import Fleet
from shared.spec.watch import SpecWatcher
from shared.state.status import SourceRecord, StatusStore, UnitStatus
from scheduler.server.config import ServerSettings

log = get_logger("fleetsync.server")
SPEC_CHECK_SECONDS = 2.0


class Backend:
    def __init__(self, server: ServerSettings) -> None:
        self.server = server
        self.redis = connect(server.settings.redis_url)
        self.store = StatusStore(self.redis, server.settings.history_size)
        self._watcher = SpecWatcher(server.settings.fleet_path, check_every=SPEC_CHECK_SECONDS)
        self._spec_lock = threading.Lock()
        self._spec_error: SpecError | None = None
        self._celery: Any = None

    # -- the fleet spec ------------------------------------------------------------------
    def fleet(self) -> Fleet | None:
        """The last spec that validated (None before the first); a new bad file is logged
        once and the last good one kept, as beat does."""
        with self._spec_lock:
            fleet, _, error = self._watcher.poll()
            if error is not None:
                self._spec_error = error
                log.error("fleet spec invalid or unreadable; keeping the last good one",
                          problems=error.problems)
            elif fleet is not None:
                self._spec_error = None
            return fleet

    def spec_problems(self) -> list[str]:
        return list(self._spec_error.problems) if self._spec_error else []

    # -- state ---------------------------------------------------------------------------
    def statuses(self) -> list[UnitStatus]:
        return self.store.all_statuses()

    def sources(self, names: list[str]) -> dict[str, SourceRecord]:
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.source(name))
        return {name: SourceRecord.of(name, raw) for name, raw in zip(names, pipe.execute())}

    def unit(self, app: str, cluster: str, limit: int) -> tuple[UnitStatus, list[dict], bool]:
        """(status, history newest first, whether Redis knows the unit) in one round trip."""
        unit = keys.unit_id(app, cluster)
        pipe = self.redis.pipeline(transaction=False)
        pipe.sismember(keys.UNITS, unit)
        pipe.lrange(keys.history(unit), 0, limit - 1)
        known, raw_history = pipe.execute()
        status = self.store.get_status(app, cluster)
        return status, [json.loads(x) for x in raw_history], bool(known)

    def unit_revisions(self, units: list[tuple[str, str]]) -> list[str]:
        """The revision of each (app, cluster) unit's last run, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for app, cluster in units:
            pipe.hget(keys.status(keys.unit_id(app, cluster)), "revision")
        return [r or "" for r in pipe.execute()]

    def ping(self) -> bool:
        return bool(self.redis.ping())

    # -- the broker ----------------------------------------------------------------------
    def celery(self) -> Any:
        """The scheduler's Celery app (loaded on first use: the allow-listed sender)."""
        if self._celery is None:
            from scheduler.app import app as celery

            self._celery = celery
        return self._celery

    def send(self, name: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> str:
        """Enqueue task ``name``; its task id."""
        return str(send(self.celery(), name, args, kwargs or {}).id)
