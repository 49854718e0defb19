"""The top-level ``windows:`` key of fleet.yaml: change windows, read and checked.

``load`` hands the node here with the cluster names and its cluster selector reader
(so ``clusters:`` reads exactly as an application's does), and the application names:

    windows:
      - name: friday-freeze
        kind: deny                     # or allow
        schedule: "0 18 * * 5"         # five-field cron, in timeZone
        duration: 60h                  # 30m, 2h, 1d, 1d12h; more than 0, at most 31 days
        timeZone: Europe/Berlin        # IANA name; default UTC
        applications: {names: [web]}   # default: every application
        clusters: {matchLabels: {env: production}}   # default: every cluster
        manualSync: false              # a manual sync may pass while it holds a unit
        drift: detect                  # or correct, while it holds a unit

Each problem names file, line and field; a window that selects no unit is a warning.
What a window decides is in ``window_rules``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable, Collection
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from yaml.nodes import Node, ScalarNode

from shared.spec import yaml as y
from shared.spec.model import Cluster, Selector, Window
from shared.spec.scalars import dns_label, parse_duration
from shared.spec.yaml import Report

WINDOW_KEYS = ("name", "kind", "schedule", "duration", "timeZone", "applications", "clusters",
               "manualSync", "drift")
MAX_DURATION = 31 * 86400.0
_DAYS = re.compile(r"(?:(\d+)d)?(.*)", re.ASCII | re.DOTALL)

SelectorReader = Callable[..., Selector | None]


def read_windows(node: Node, field: str, report: Report, *, selector: SelectorReader,
                 applications: Collection[str], clusters: Collection[Cluster]
                 ) -> tuple[Window, ...] | None:
    """Every window of the list; duplicates and windows selecting no unit reported."""
    if isinstance(node, ScalarNode) and node.tag == y.NULL:
        return ()
    items = y.sequence(node, field, report)
    if items is None:
        return None
    cluster_names = [c.name for c in clusters]
    out: list[Window] = []
    first_line: dict[str, int] = {}
    for i, item in enumerate(items):
        at = f"{field}[{i}]"
        window = _window(item, at, report, selector, applications, cluster_names)
        if window is None:
            continue
        name_node = _value(item, "name")
        if window.name in first_line:
            report.error(name_node, f"{at}.name", f"duplicate window name {window.name!r} "
                                                  f"(first at line {first_line[window.name]})")
            continue
        first_line[window.name] = y.line(name_node)
        if not any(window.selects(a, c) for a in applications for c in clusters):
            report.warn(item, at, f"window {window.name!r} selects no unit")
        out.append(window)
    return tuple(out)


def _value(node: Any, key: str) -> Node:
    return next(v for k, v in node.value if getattr(k, "value", None) == key)


def _window(node: Node, field: str, report: Report, selector: SelectorReader,
            applications: Collection[str], clusters: Collection[str]) -> Window | None:
    required = ("name", "kind", "schedule", "duration")
    m = y.mapping(node, field, report, WINDOW_KEYS, required=required)
    if m is None:
        return None
    before = len(report.problems())
    name = m.read("name", partial(y.checked, check=dns_label), report, "")
    kind = m.read("kind", partial(y.checked, check=_kind), report, "")
    zone = m.read("timeZone", partial(y.checked, check=_time_zone), report, "UTC")
    schedule = m.read("schedule", partial(y.checked, check=cron_problem), report, "")
    length = m.read("duration", window_duration, report, 0.0)
    apps = m.read("applications", partial(_app_selector, known=applications), report, None)
    chosen = m.read("clusters", partial(selector, clusters=clusters), report, None)
    manual = m.read("manualSync", y.boolean, report, False)
    drift = m.read("drift", partial(y.checked, check=_drift), report, "detect")
    if len(report.problems()) != before or not all(k in m.values for k in required):
        return None
    return Window(name, kind, schedule, length, zone, apps, chosen, manual, drift)


def _kind(text: str) -> str | None:
    return None if text in ("allow", "deny") else f"must be allow or deny, not {text!r}"


def _drift(text: str) -> str | None:
    return None if text in ("correct", "detect") else f"must be correct or detect, not {text!r}"


def _time_zone(text: str) -> str | None:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {text!r}: give an IANA name such as Europe/Berlin or UTC"
    return None


def cron_problem(text: str) -> str | None:
    """What is wrong with a five-field cron expression, or None."""
    if len(text.split()) != 5:
        return (f"{text!r} is not a cron expression: give five fields (minute hour "
                "day-of-month month day-of-week), e.g. '0 18 * * 5'")
    if not croniter.is_valid(text):
        return f"{text!r} does not parse as a cron expression"
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=timezone.utc)).get_next(datetime)
    except Exception:   # croniter's own errors for a date that never comes (Feb 30)
        return f"{text!r} never fires"
    return None


def parse_window_duration(text: str) -> float:
    """Seconds in ``30m``, ``2h``, ``1d``, ``1d12h``: more than 0, at most 31 days."""
    days, rest = _DAYS.fullmatch(text.strip()).groups()  # type: ignore[union-attr]
    try:
        seconds = float(days or 0) * 86400 + (parse_duration(rest) if rest or not days else 0.0)
    except ValueError as err:
        if "greater than zero" in str(err):
            raise ValueError(f"duration {text!r} must be greater than zero") from err
        raise ValueError(f"invalid duration {text!r}: use e.g. 30m, 2h, 1d or 1d12h") from err
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be greater than zero")
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {text!r} is longer than 31 days")
    return seconds


def window_duration(node: Node, field: str, report: Report) -> float | None:
    if not isinstance(node, ScalarNode) or node.tag in (y.BOOL, y.NULL):
        report.error(node, field, f"must be a duration such as 30m, 2h or 1d, not {y.kind(node)}")
        return None
    try:
        return parse_window_duration(node.value)
    except ValueError as err:
        report.error(node, field, str(err))
        return None


def _app_selector(node: Node, field: str, report: Report, known: Collection[str]
                  ) -> Selector | None:
    m = y.mapping(node, field, report, ("names", "matchLabels"))
    if m is None:
        return None
    if "matchLabels" in m.values:
        report.error(m.values["matchLabels"], m.at("matchLabels"),
                     "applications carry no labels: select them by names")
        return None
    if "names" not in m.values:
        report.error(node, field, "give names")
        return None
    names = y.names(m.values["names"], m.at("names"), report, known=known, what="application")
    return Selector(names=names) if names is not None else None
