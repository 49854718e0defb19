"""The dashboard's window band: per cluster, the change windows that select its units (pure).

Each cluster of the spec is listed with the windows that select at least one
of its units: kind, open or closed now, and when it next closes or opens, on
the window's own clock (``shared/spec/window_rules.py`` decides). ``held``
says what the windows decide for one unit now: the unit page uses it to ask
for a reason before a manual sync, or to say that the window lets none pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from shared.spec.model import Fleet, Window
from shared.spec.window_rules import Decision, decide, is_open, window_change


@dataclass(frozen=True)
class WindowState:
    name: str
    kind: str                   # "allow" | "deny"
    open: bool
    change: str                 # when it next closes (open) or opens (closed); "" not soon
    time_zone: str
    manual_sync: bool

    @property
    def holds(self) -> bool:
        """Whether it holds changes now by itself (an open deny, a closed allow)."""
        return self.open == (self.kind == "deny")

    @property
    def summary(self) -> str:
        when = self.change or "not within 400 days"
        return f"open, closes {when}" if self.open else f"closed, opens {when}"


@dataclass(frozen=True)
class Band:
    cluster: str
    windows: tuple[WindowState, ...]


def local(instant: datetime | None, zone: str) -> str:
    """``Mon 07 Dec 06:00 Europe/Berlin``; "" for None."""
    if instant is None:
        return ""
    return f"{instant.astimezone(ZoneInfo(zone)):%a %d %b %H:%M} {zone}"


def state(window: Window, now: datetime) -> WindowState:
    return WindowState(window.name, window.kind, is_open(window, now),
                       local(window_change(window, now), window.time_zone), window.time_zone,
                       window.manual_sync)


def bands(fleet: Fleet | None, now: datetime) -> list[Band]:
    """One band per cluster that a window concerns, in spec order."""
    if fleet is None or not fleet.windows:
        return []
    out = []
    states: dict[str, WindowState] = {}        # each window's state, computed once
    for cluster in fleet.clusters.values():
        apps = [a.name for a in fleet.applications_for(cluster)]
        mine = [w for w in fleet.windows if any(w.selects(a, cluster) for a in apps)]
        for w in mine:
            if w.name not in states:
                states[w.name] = state(w, now)
        if mine:
            out.append(Band(cluster.name, tuple(states[w.name] for w in mine)))
    return out


def held(fleet: Fleet | None, app: str, cluster: str, now: datetime) -> Decision | None:
    """What the windows decide for the unit now; None when they allow it (or no spec)."""
    if fleet is None or cluster not in fleet.clusters:
        return None
    found = decide(fleet.windows, app, fleet.clusters[cluster], now)
    return None if found.allowed else found
