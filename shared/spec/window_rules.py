"""What change windows decide for one unit at one instant: pure, no Redis, no Celery.

The rules, once:

- A window is open from each fire time of its cron ``schedule`` for ``duration``
  (half-open: open at the fire time, closed again at fire time + duration).
- An open ``deny`` window that selects the unit always wins: the unit is held.
- Else, if any ``allow`` window selects the unit, changes happen only while one of
  them is open; outside them the unit is held.
- A unit that no window selects is always allowed.
- While held, a manual sync may pass only if every window holding the unit says
  ``manualSync: true``, and drift is corrected only if every one says
  ``drift: correct`` (the most careful window wins). Held by deny windows, those
  are the open deny windows; held outside allow windows, every allow window that
  selects the unit.

Time zones and daylight saving: the cron is read in the window's ``timeZone`` on
the wall clock, and ``duration`` is elapsed time. A fire time that the clock skips
(02:30 on the spring-forward day in Europe/Berlin, 02:00 -> 03:00) opens the window
at the instant 02:30 would have been on the old offset, that is 03:30 CEST; it is
not dropped. A fire time that the clock shows twice (02:30 on the autumn day) fires
once, at its first occurrence (02:30 CEST, before the clock goes back). So a 2h
window opening then closes at 03:30 CET on the wall clock.

``decide(windows, app, cluster, now)`` gives a ``Decision``; ``next_change(...)`` the
next instant a window opens or closes for the unit; ``held_until`` inside ``decide``
walks those changes until the unit is allowed again (bounded: ``None`` means not
within ``HORIZON``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

from croniter import croniter

from shared.spec.model import Cluster, Window

HORIZON = timedelta(days=400)
_SLACK = timedelta(hours=2)     # more than any daylight-saving shift
_MAX_STEPS = 2000


@dataclass(frozen=True)
class Decision:
    """Allowed or held, by which window, until when, and what may pass meanwhile."""

    allowed: bool
    window: str | None = None            # held: the window that holds it (open deny, or
                                         # the allow window that opens first)
    until: datetime | None = None        # held: when it is next allowed (None: not soon)
    manual_sync: bool = True             # a manual sync may pass
    drift_corrected: bool = True         # drift is corrected (else only detected)
    time_zone: str = "UTC"               # the holding window's, for the message

    def message(self) -> str:
        if self.allowed:
            return "allowed"
        if self.until is None:
            return f"held by window {self.window} (no opening within {HORIZON.days} days)"
        local = self.until.astimezone(ZoneInfo(self.time_zone))
        return f"held by window {self.window} until {local:%a %H:%M} {self.time_zone}"


def selecting(windows: Iterable[Window], app: str, cluster: Cluster) -> list[Window]:
    return [w for w in windows if w.selects(app, cluster)]


def decide(windows: Sequence[Window], app: str, cluster: Cluster, now: datetime) -> Decision:
    """The decision for unit (app, cluster) at the aware instant ``now``."""
    mine = selecting(windows, app, cluster)
    held = _holders(mine, now)
    if not held:
        return Decision(True)
    until = _allowed_from(mine, now)
    allows = [w for w in mine if w.kind == "allow"]
    if held[0].kind == "allow" and allows:
        held = sorted(allows, key=lambda w: next_fire(w, now) or now + HORIZON)
    first = held[0]
    return Decision(False, first.name, until,
                    manual_sync=all(w.manual_sync for w in held),
                    drift_corrected=all(w.drift == "correct" for w in held),
                    time_zone=first.time_zone)


def next_change(windows: Sequence[Window], app: str, cluster: Cluster,
                now: datetime) -> datetime | None:
    """The next instant after ``now`` at which a window selecting the unit opens or closes."""
    times = [t for w in selecting(windows, app, cluster) if (t := window_change(w, now))]
    return min(times, default=None)


def window_change(window: Window, now: datetime) -> datetime | None:
    """When this window next opens (closed now) or closes (open now), after ``now``; None
    when it never does (an open window whose fires overlap for ``_MAX_STEPS`` chains)."""
    start = last_fire(window, now)
    length = timedelta(seconds=window.duration)
    if start is not None and now < start + length:
        end = start + length
        # a fire while still open keeps it open: the close is the end of the chain
        for _ in range(_MAX_STEPS):
            follow = next_fire(window, start)
            if follow is None or follow >= end:
                return end
            start, end = follow, follow + length
        return None         # each fire comes before the last one closes: it never closes
    return next_fire(window, now)


def is_open(window: Window, now: datetime) -> bool:
    start = last_fire(window, now)
    return start is not None and now < start + timedelta(seconds=window.duration)


def last_fire(window: Window, now: datetime) -> datetime | None:
    """The latest fire time at or before ``now`` (aware, UTC)."""
    zone = ZoneInfo(window.time_zone)
    local = now.astimezone(zone).replace(tzinfo=None)
    if _steady(zone, now):      # no clock change near either end: one cron step
        found = _instant(croniter(window.schedule, local.replace(microsecond=0)
                                  + timedelta(seconds=1)).get_prev(datetime), zone)
        if found <= now and _steady(zone, found):
            return found
    it = croniter(window.schedule, local + _SLACK)
    best: datetime | None = None
    for _ in range(_MAX_STEPS):
        naive = it.get_prev(datetime)
        instant = _instant(naive, zone)
        if instant <= now and (best is None or instant > best):
            best = instant
        if best is not None and naive < local - _SLACK:
            return best
        if naive < local - HORIZON:
            return best
    return best


def next_fire(window: Window, now: datetime) -> datetime | None:
    """The earliest fire time strictly after ``now`` (aware, UTC)."""
    zone = ZoneInfo(window.time_zone)
    local = now.astimezone(zone).replace(tzinfo=None)
    if _steady(zone, now):
        found = _instant(croniter(window.schedule, local).get_next(datetime), zone)
        if found > now and _steady(zone, found):
            return found
    it = croniter(window.schedule, local - _SLACK)
    best: datetime | None = None
    for _ in range(_MAX_STEPS):
        naive = it.get_next(datetime)
        instant = _instant(naive, zone)
        if instant > now and (best is None or instant < best):
            best = instant
        if best is not None and naive > local + _SLACK:
            return best
        if naive > local + HORIZON:
            return best
    return best


def _steady(zone: ZoneInfo, now: datetime) -> bool:
    """Whether ``zone`` keeps one UTC offset from ``_SLACK`` before to ``_SLACK`` after
    ``now``. Away from a clock change, wall-clock order is instant order, so one cron
    step from ``now`` finds the fire time; the search with slack below is needed only
    when ``now`` or the fire time found is near a change (the caller checks both)."""
    return (now - _SLACK).astimezone(zone).utcoffset() == (now + _SLACK).astimezone(zone).utcoffset()


def _instant(naive: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in ``zone`` as an instant: fold=0, so a skipped time reads on the
    offset before the change and a repeated time is its first occurrence."""
    return naive.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)


def _holders(mine: Sequence[Window], now: datetime) -> list[Window]:
    denies = [w for w in mine if w.kind == "deny" and is_open(w, now)]
    if denies:
        return denies
    allows = [w for w in mine if w.kind == "allow"]
    if allows and not any(is_open(w, now) for w in allows):
        return allows
    return []


def _allowed_from(mine: Sequence[Window], now: datetime) -> datetime | None:
    """The first instant after ``now`` at which the unit is allowed, within ``HORIZON``."""
    t = now
    for _ in range(_MAX_STEPS):
        changes = [c for w in mine if (c := window_change(w, t))]
        if not changes:
            return None
        t = min(changes)
        if t > now + HORIZON:
            return None
        if not _holders(mine, t):
            return t
    return None
