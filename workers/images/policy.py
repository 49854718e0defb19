"""Which tag of a repository an image policy picks: pure, tags in, a ``Choice`` out.

    tags -> valid OCI tags -> filterTags (pattern searched, ``extract`` expanded)
         -> the value each policy orders -> the candidates -> the highest (or lowest)

The orders are Flux's image-reflector-controller's:

- ``semver``: the highest version in the range, by the rules Git semver refs follow
  (``shared.semver``: a prerelease only when the range names one of the same
  ``major.minor.patch``); a leading ``v`` is accepted, as Flux does. Tags that are not
  a full ``MAJOR.MINOR.PATCH`` version are ignored (Flux's Masterminds parser also
  reads ``1.2`` as ``1.2.0``; a tag this loose is rarely a release, so it is not).
- ``numerical``: the value read as a decimal number (``1606364286``, ``-3.5``); what
  is not one is ignored; ``asc`` picks the highest, ``desc`` the lowest.
- ``alphabetical``: the value in code-point order (Go's string order); ``asc`` picks
  the last, ``desc`` the first.

A registry's tag list is hostile input: a tag that is not a valid OCI tag is ignored
and counted, and so is one the filter does not match or whose value the order
cannot read. On a tie (``v1.0.0`` and ``1.0.0``; two tags with the same extracted
value) the tag last in code-point order wins, so the choice never depends on the
order the registry listed the tags in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from shared.ocirefs import TAG
from shared.semver import Version, parse_range, parse_version
from shared.spec.images import ImagePolicy
from shared.spec.tagfilter import expand

_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


@dataclass(frozen=True)
class Choice:
    """The tag a policy picked, and why, in words an operator reads in ``images status``."""

    tag: str
    why: str            # "1.1.0 by semver ^1 (highest of 3 matching of 5 tags)"
    considered: int     # tags looked at (the whole list)
    ignored: int        # tags that are not valid references or did not match the filter


def describe(policy: ImagePolicy) -> str:
    """``semver ^1``, ``numerical asc``, with the filter when there is one."""
    text = f"{policy.kind} {policy.value}"
    if policy.filter is not None:
        text += f" of tags matching {policy.filter.pattern!r}"
        if policy.filter.extract:
            text += f" (extract {policy.filter.extract!r})"
    return text


def choose(policy: ImagePolicy, tags: Iterable[str]) -> Choice | None:
    """The tag ``policy`` picks among ``tags``, or None when no tag is a candidate."""
    seen = list(tags)
    values, ignored = _values(policy, seen)
    order = _ORDERS.get(policy.kind)
    if order is None:
        raise ValueError(f"image policy {policy.name}: unknown policy kind {policy.kind!r}")
    candidates, unreadable = order(policy.value, values)
    ignored += unreadable
    if not candidates:
        return None
    candidates.sort(key=lambda pair: (pair[0], pair[1][0]))
    highest = policy.kind == "semver" or policy.value == "asc"
    key, (tag, value) = candidates[-1] if highest else candidates[0]
    shown = f"{tag} ({value})" if value != tag else tag
    why = (f"{shown} by {describe(policy)} ({_word(policy)} of {len(candidates)} matching "
           f"of {len(seen)} tags)")
    return Choice(tag=tag, why=why, considered=len(seen), ignored=ignored)


def _values(policy: ImagePolicy, tags: list[str]) -> tuple[list[tuple[str, str]], int]:
    """(tag, the value the order reads) of each valid tag the filter keeps; how many not."""
    pattern = re.compile(policy.filter.pattern) if policy.filter is not None else None
    extract = policy.filter.extract if policy.filter is not None else ""
    kept: list[tuple[str, str]] = []
    for tag in tags:
        if not isinstance(tag, str) or not TAG.fullmatch(tag):
            continue
        if pattern is None:
            kept.append((tag, tag))
            continue
        match = pattern.search(tag)
        if match is not None:
            kept.append((tag, expand(extract, match) if extract else tag))
    return kept, len(tags) - len(kept)


Candidates = list[tuple[Any, tuple[str, str]]]


def _semver(range_text: str, values: list[tuple[str, str]]) -> tuple[Candidates, int]:
    wanted = parse_range(range_text)
    out: Candidates = []
    unreadable = 0
    for tag, value in values:
        version = parse_version(value)
        if version is None:
            unreadable += 1
        elif wanted(version):
            out.append((_precedence(version), (tag, value)))
    return out, unreadable


def _precedence(version: Version) -> tuple[Any, ...]:
    """Semver precedence as a plain tuple (``Version.key`` compares through nodesemver,
    parsing both sides at each comparison: too slow for 10,000 tags). A release sorts
    above its prereleases; numeric identifiers below alphanumeric ones, numerically."""
    pre = tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                for part in version.prerelease)
    return (*version.triple(), 0 if pre else 1, pre)


def _numerical(_order: str, values: list[tuple[str, str]]) -> tuple[Candidates, int]:
    out: Candidates = [(float(value), (tag, value)) for tag, value in values
                       if _NUMBER.fullmatch(value)]
    return out, len(values) - len(out)


def _alphabetical(_order: str, values: list[tuple[str, str]]) -> tuple[Candidates, int]:
    return [(value, (tag, value)) for tag, value in values], 0


_ORDERS = {"semver": _semver, "numerical": _numerical, "alphabetical": _alphabetical}


def _word(policy: ImagePolicy) -> str:
    if policy.kind == "alphabetical":
        return "last" if policy.value == "asc" else "first"
    return "highest" if policy.kind == "semver" or policy.value == "asc" else "lowest"
