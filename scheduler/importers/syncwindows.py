"""Argo CD AppProject ``syncWindows`` read into fleetsync ``windows:``.

Argo CD matches a window to an application of the project when any of its lists
matches (``applications`` by the Application's name, ``namespaces`` by its
destination namespace, ``clusters`` by its destination), with ``*`` and ``?``
wildcards; ``andOperator: true`` asks every given list to match. fleetsync's
windows select applications by name and clusters by name, and a window's two
selectors must both match, so each Argo CD window becomes:

- one window over the applications its ``applications`` and ``namespaces``
  lists match (names expanded from the imported applications of the project),
- one more over the project's applications on the clusters its ``clusters``
  list matches (OR: a unit matched by either is held as Argo CD holds it),
- or, with ``andOperator``, a single window over both.

``kind``, ``schedule``, ``duration``, ``timeZone`` and ``manualSync`` carry over;
what matches nothing, or cannot be read, is a note, never dropped silently.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from scheduler.importers.common import Entry, Import, Manifest, dns_name
from shared.spec.windows import cron_problem, parse_window_duration

_KEYS = {"kind", "schedule", "duration", "applications", "namespaces", "clusters",
         "manualSync", "timeZone", "andOperator"}


def build(projects: dict[str, Manifest], result: Import) -> None:
    """Add the windows of every project that has applications among the imported ones."""
    for name, project in sorted(projects.items()):
        windows = project.spec.get("syncWindows") or []
        if not isinstance(windows, list):
            result.skipped.append(f"{project.where()}: syncWindows is not a list")
            continue
        mine = {n: e for n, e in result.applications.items() if e.data.get("_project") == name}
        for i, window in enumerate(windows):
            where = f"{project.where()} syncWindows[{i}]"
            if not isinstance(window, dict):
                result.skipped.append(f"{where}: not a mapping")
                continue
            _window(window, where, f"{dns_name(name)}-{i}", mine, result)


def _window(window: dict[str, Any], where: str, name: str, apps: dict[str, Entry],
            result: Import) -> None:
    kind, schedule = str(window.get("kind", "")), str(window.get("schedule", ""))
    problem = ("kind must be allow or deny" if kind not in ("allow", "deny")
               else cron_problem(schedule))
    try:
        duration = str(window.get("duration", ""))
        parse_window_duration(duration)
    except ValueError as err:
        problem = problem or str(err)
    if problem:
        result.skipped.append(f"{where}: {problem}")
        return
    base: dict[str, Any] = {"kind": kind, "schedule": schedule, "duration": duration}
    if window.get("timeZone"):
        base["timeZone"] = str(window["timeZone"])
    if window.get("manualSync"):
        base["manualSync"] = True
    notes = [f"{where}: spec.syncWindows[].{k} has no counterpart"
             for k in sorted(set(window) - _KEYS)]
    by_app = [n for n, e in apps.items()
              if _matches(window.get("applications"), e.data.get("_argo_name", n))
              or _matches(window.get("namespaces"), e.data.get("namespace", ""))]
    clusters = sorted({c for e in apps.values() for c in _clusters(e)
                       if _matches(window.get("clusters"), c)})
    made: list[dict[str, Any]] = []
    if window.get("andOperator"):
        both = [n for n in by_app if not window.get("clusters")
                or set(_clusters(apps[n])) & set(clusters)]
        if both:
            made.append({"name": name, **base, "applications": {"names": sorted(both)},
                         **({"clusters": {"names": clusters}} if window.get("clusters") else {})})
    else:
        if by_app:
            made.append({"name": name, **base, "applications": {"names": sorted(by_app)}})
        if clusters:
            made.append({"name": f"{name}-clusters" if by_app else name, **base,
                         "applications": {"names": sorted(apps)},
                         "clusters": {"names": clusters}})
    if not made:
        result.skipped.append(f"{where}: matches none of the imported applications")
        return
    for data in made:
        entry = Entry(data, list(notes))
        entry.notes.insert(0, f"{where}: Argo CD sync window")
        result.windows[data["name"]] = entry


def _matches(patterns: Any, value: str) -> bool:
    return isinstance(patterns, list) and any(fnmatchcase(value, str(p)) for p in patterns)


def _clusters(entry: Entry) -> list[str]:
    return list((entry.data.get("clusters") or {}).get("names") or [])
