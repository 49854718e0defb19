"""The ``rollout:`` key of an application: ordered waves of clusters.

``load`` hands the node here with its own readers for cluster selectors
and durations (so both read exactly as everywhere else in the file):

    rollout:
      waves:
        - clusters: {names: [development]}
        - clusters: {matchLabels: {env: staging}}
          pause: 5m                     # once this wave is Ready, wait before the next
        - clusters: {matchLabels: {env: production}}
          maxParallel: 25%              # or a count; default: the whole wave at once
      urgentOnRevert: false             # true: a revert goes to every cluster at once

A cluster is in the first wave that selects it; the application's clusters that
no wave selects form an implicit last wave (``fleet_waves``). The rules of a
rollout are in ``shared/rollout.py``.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Callable, Collection

from yaml.nodes import Node, ScalarNode

from shared.spec import yaml as y
from shared.rollout import WavePlan, resolve_max_parallel
from shared.spec.model import Application, Fleet, Rollout, Selector, Wave
from shared.spec.yaml import Report

ROLLOUT_KEYS = ("waves", "urgentOnRevert")
WAVE_KEYS = ("clusters", "maxParallel", "pause")
_PERCENT = re.compile(r"([1-9][0-9]?|100)%")
_INT = "tag:yaml.org,2002:int"

SelectorReader = Callable[..., Selector | None]
DurationReader = Callable[[Node, str, Report], float | None]


def rollout(node: Node, field: str, report: Report, selector: SelectorReader,
            durations: DurationReader, clusters: Collection[str]) -> Rollout | None:
    m = y.mapping(node, field, report, ROLLOUT_KEYS, required=("waves",))
    if m is None:
        return None
    waves: list[Wave] = []
    items = y.sequence(m.values["waves"], m.at("waves"), report) if "waves" in m.values else None
    for i, item in enumerate(items or []):
        wave = _wave(item, f"{m.at('waves')}[{i}]", report, selector, durations, clusters)
        if wave is not None:
            waves.append(wave)
    if items is not None and not items:
        report.error(m.values["waves"], m.at("waves"), "give at least one wave")
    if items is None or len(waves) != len(items):
        return None
    return Rollout(tuple(waves), m.read("urgentOnRevert", y.boolean, report, False))


def _wave(node: Node, field: str, report: Report, selector: SelectorReader,
          durations: DurationReader, clusters: Collection[str]) -> Wave | None:
    m = y.mapping(node, field, report, WAVE_KEYS, required=("clusters",))
    if m is None or "clusters" not in m.values:
        return None
    chosen = m.read("clusters", partial(selector, clusters=clusters), report, None)
    if chosen is None:
        return None
    return Wave(chosen, m.read("maxParallel", _max_parallel, report, None),
                m.read("pause", durations, report, 0.0))


def _max_parallel(node: Node, field: str, report: Report) -> str | None:
    if isinstance(node, ScalarNode) and node.tag == _INT and node.value.isdigit() \
            and int(node.value) >= 1:
        return str(int(node.value))
    if isinstance(node, ScalarNode) and node.tag == y.STR and _PERCENT.fullmatch(node.value):
        return str(node.value)
    report.error(node, field, f"must be a count of clusters (1 or more) or a percent of the "
                              f"wave such as 25%, not {y.kind(node)}"
                              + (f" {node.value!r}" if isinstance(node, ScalarNode) else ""))
    return None


def fleet_waves(fleet: Fleet, app: Application) -> list[WavePlan]:
    """The application's waves against the fleet as it is: each cluster it targets in the
    first wave that selects it; those no wave selects in an implicit last wave."""
    if app.rollout is None:
        return []
    targeted = [c for c in fleet.clusters_for(app)]
    placed: set[str] = set()
    plans: list[WavePlan] = []
    for wave in app.rollout.waves:
        members = tuple(c.name for c in targeted if wave.clusters.matches(c)
                        and c.name not in placed)
        placed.update(members)
        plans.append(WavePlan(members, resolve_max_parallel(wave.max_parallel, len(members)),
                              wave.pause))
    rest = tuple(c.name for c in targeted if c.name not in placed)
    if rest:
        plans.append(WavePlan(rest, len(rest)))
    return plans


def describe(plans: list[WavePlan]) -> list[dict[str, Any]]:
    return [{"wave": i + 1, "clusters": list(p.clusters), "max_parallel": p.max_parallel,
             "pause": p.pause} for i, p in enumerate(plans)]
