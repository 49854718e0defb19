"""The notifier's loop: read the fleet from Redis, decide, claim, send.

Every ``interval`` (1 s) it reads every unit's status (one pipelined read),
the sources' revisions and its own small state, calls the pure functions of
``decide`` and hands each message it wins to ``send.Sender``:

    spec (SpecWatcher) + statuses (StatusStore) + tracked states
        -> notify.transition / rollup / fleet_rollup -> Message(key)
        -> SET fleetsync:notify:sent:<key> NX  (won: dispatch; lost: another notifier has it)
        -> Sender.pump (retries, rate limits)

A unit's history is read only when its application's revision has settled
and its roll-up is not yet claimed (for "in 42 s"), so a no-op pass costs one
status read per unit and nothing else.

What the notifier keeps in Redis, besides the claims (kept 90 days):

    fleetsync:notify:units             hash unit -> last reported state (JSON)
    fleetsync:notify:seen:<app>:<rev>  when a unit of app was first seen at rev (7 days)
    fleetsync:notify:notifiers         hash notifier id -> epoch of its last pass

So a restarted notifier, or a second one, sends nothing twice. Wiping Redis
forgets the claims: the current revisions are rolled up once more.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping

from scheduler.notify.decide import (AppView, Message, Rollup, Tracked, UnitView, fleet_rollup,
                                     held, rollup, rollup_message, transition)
from scheduler.notify.send import Sender
from shared.state import keys
from shared.logs import get_logger
from shared.state.redisconn import RedisError
from shared.spec.model import Fleet, Notifications
from shared.spec.watch import SpecWatcher
from shared.state.status import StatusStore, UnitStatus

log = get_logger("fleetsync.notifier")

PREFIX = f"{keys.PREFIX}:notify"
UNITS = f"{PREFIX}:units"
NOTIFIERS = f"{PREFIX}:notifiers"
CLAIM_TTL = 90 * 24 * 3600
SEEN_TTL = 7 * 24 * 3600
DONE_CACHE = 100_000


def claim_key(message_key: str) -> str:
    return f"{PREFIX}:sent:{message_key}"


def seen_key(app: str, revision: str) -> str:
    return f"{PREFIX}:seen:{app}:{revision}"


def notifier_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Notifier:
    def __init__(self, client: Any, watcher: SpecWatcher, sender: Sender, *,
                 clock: Callable[[], float] = time.time, name: str | None = None) -> None:
        self.client = client
        self.store = StatusStore(client)
        self.watcher = watcher
        self.sender = sender
        self.clock = clock
        self.name = name or notifier_id()
        self.done: set[str] = set()          # message keys claimed here or elsewhere
        self.seen: dict[tuple[str, str], float] = {}    # (app, revision) -> first seen
        self._spec_error = ""

    # -- one pass -----------------------------------------------------------------
    def poll(self) -> list[Message]:
        """One pass over the fleet; the messages this notifier claimed and dispatched."""
        fleet = self._fleet()
        claimed: list[Message] = []
        if fleet is not None and fleet.notifications.routes:
            for message in self.decide(fleet, self.clock()):
                if self._claim(message):
                    self.sender.dispatch(message)
                    claimed.append(message)
        self.client.hset(NOTIFIERS, self.name, repr(self.clock()))
        return claimed

    def _fleet(self) -> Fleet | None:
        fleet, changed, error = self.watcher.poll()
        if error is not None and str(error) != self._spec_error:
            self._spec_error = str(error)
            log.error("fleet spec does not validate: notifying from the last good one",
                      problems=str(error))
        if fleet is not None and changed:
            self.sender.set_routes(fleet.notifications.routes)
            log.info("notification routes", routes=[r.name for r in fleet.notifications.routes])
        return fleet

    def decide(self, fleet: Fleet, now: float) -> list[Message]:
        settings = fleet.notifications
        statuses: dict[str, dict[str, UnitStatus]] = {}
        for status in self.store.all_statuses():
            statuses.setdefault(status.app, {})[status.cluster] = status
        tracked = self._tracked()
        revisions: dict[str, str] = {}
        messages: list[Message] = []
        rollups: dict[str, Rollup] = {}
        updates: dict[str, Tracked] = {}
        for app in fleet.applications.values():
            if app.suspend or not any(r.covers(app.name) for r in settings.routes):
                continue
            targets = tuple(c.name for c in fleet.clusters_for(app))
            units = {c: _view(s) for c, s in statuses.get(app.name, {}).items() if c in targets}
            for cluster, unit in units.items():
                unit_id = keys.unit_id(app.name, cluster)
                message, new = transition(app.name, unit, tracked.get(unit_id), now, settings.debounce)
                if new is not None and new != tracked.get(unit_id):
                    updates[unit_id] = new
                if message is not None:
                    messages.append(message)
                announced = held(app.name, unit)
                if announced is not None:
                    messages.append(announced)
            if app.source not in revisions:
                found = self.store.source_revision(app.source)
                revisions[app.source] = found[0] if found else ""
            view = AppView(app.name, revisions[app.source], targets, units)
            found_rollup = self._rollup(view, now, settings)
            if found_rollup is not None:
                rollups[app.name] = found_rollup
                messages.append(rollup_message(found_rollup))
        messages += self._fleet_messages(settings, rollups)
        self._save_tracked(updates, fleet)
        return [m for m in messages if m.key not in self.done]

    def _rollup(self, view: AppView, now: float, settings: Notifications) -> Rollup | None:
        if not any(u.revision == view.revision for u in view.units.values()) or not view.revision:
            return None
        first_seen = self._first_seen(view.app, view.revision, now)
        view = AppView(view.app, view.revision, view.targets, view.units, first_seen)
        found = rollup(view, now, settings.settle_timeout)
        if found is None or not (found.settled or found.timed_out):
            return found
        if f"rollup:{view.app}:{view.revision}" in self.done:
            return found
        return rollup(self._with_history(view), now, settings.settle_timeout)

    def _first_seen(self, app: str, revision: str, now: float) -> float:
        if (app, revision) not in self.seen:
            if len(self.seen) > DONE_CACHE:
                self.seen.clear()
            key = seen_key(app, revision)
            self.client.set(key, repr(now), nx=True, ex=SEEN_TTL)
            self.seen[(app, revision)] = float(self.client.get(key) or now)
        return self.seen[(app, revision)]

    def _with_history(self, view: AppView) -> AppView:
        pipe = self.client.pipeline(transaction=False)
        clusters = list(view.units)
        for cluster in clusters:
            pipe.lrange(keys.history(keys.unit_id(view.app, cluster)), 0, -1)
        units = dict(view.units)
        for cluster, raw in zip(clusters, pipe.execute()):
            history = tuple(json.loads(x) for x in raw)
            u = units[cluster]
            units[cluster] = replace(u, history=history)
        return AppView(view.app, view.revision, view.targets, units, view.first_seen)

    def _fleet_messages(self, settings: Notifications, rollups: Mapping[str, Rollup]) -> list[Message]:
        out: list[Message] = []
        for route in settings.routes:
            if route.provider != "github" or route.context != "fleet":
                continue
            by_revision: dict[str, list[Rollup]] = {}
            for app, r in rollups.items():
                if route.covers(app):
                    by_revision.setdefault(r.revision, []).append(r)
            for revision, group in by_revision.items():
                message = fleet_rollup(route.name, revision, group)
                if message is not None:
                    out.append(message)
        return out

    # -- the notifier's own state ---------------------------------------------------------
    def _claim(self, message: Message) -> bool:
        if len(self.done) > DONE_CACHE:
            self.done.clear()
        self.done.add(message.key)
        won = self.client.set(claim_key(message.key), self.name, nx=True, ex=CLAIM_TTL)
        return bool(won)

    def _tracked(self) -> dict[str, Tracked]:
        out = {}
        for unit, raw in self.client.hgetall(UNITS).items():
            try:
                out[unit] = Tracked.from_dict(json.loads(raw))
            except (ValueError, TypeError):
                continue        # unreadable: treated as never seen
        return out

    def _save_tracked(self, updates: Mapping[str, Tracked], fleet: Fleet) -> None:
        if updates:
            self.client.hset(UNITS, mapping={u: json.dumps(t.to_dict()) for u, t in updates.items()})
        gone = set(self.client.hkeys(UNITS)) - {keys.unit_id(a, c) for a, c in fleet.units()}
        if gone:
            self.client.hdel(UNITS, *gone)

    # -- the loop ------------------------------------------------------------------------
    def run(self, stop: threading.Event, interval: float = 1.0, drain: float = 5.0) -> None:
        """Poll and send until ``stop`` is set; then keep sending what is due for ``drain`` s."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.poll()
            except RedisError as err:
                log.warning("Redis unavailable: trying again", error=str(err))
            self.sender.pump()
            stop.wait(max(0.05, interval - (time.monotonic() - started)))
        deadline = time.monotonic() + drain
        while self.sender.waiting() and time.monotonic() < deadline:
            self.sender.pump()
            time.sleep(0.2)
        if self.sender.waiting():
            log.warning("stopped with notifications not sent", waiting=self.sender.waiting())


def _view(status: UnitStatus) -> UnitView:
    return UnitView(status.cluster, str(status.phase), status.revision, status.message,
                    status.run_id, held_by=status.held_by, held_until=status.held_until,
                    held_revision=status.held_revision)


def active_notifiers(client: Any, within: float, now: float) -> Iterable[str]:
    """The notifiers that finished a pass in the last ``within`` seconds."""
    return [name for name, at in client.hgetall(NOTIFIERS).items() if now - float(at) <= within]
