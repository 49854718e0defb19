"""Semantic versions and version ranges, for sources that follow a ``semver:`` ref.

The spec loader calls ``parse_range`` to reject a bad range when the fleet file
is read; the Git fetcher calls ``matching_max`` with the repository's tags to
pick the revision (chart versions can be picked the same way). Both are pure:
text in, value out.

The grammar, the expansion of partial, tilde, caret and x-ranges, the
prerelease rule and the version order are those of ``nodesemver``, a port of
npm's own node-semver: a prerelease version matches only when a comparator of
the same ``||`` alternative names a prerelease of the same ``major.minor.patch``,
so ``^1.0`` never picks ``1.3.0-rc.1``. This module is the thin layer that keeps
the spec's contract on top of it: comparators may also be separated by commas
(``>=1.0.0, <2.0.0``); an empty range or alternative and hyphen ranges
(``1.2.3 - 2.0.0``) are refused; and a bad range is reported with the comparator
that cannot be read, for the loader's ``file:line: field`` message.

``semantic_version``'s ``NpmSpec`` was the other candidate; it departs from
node-semver on prerelease comparators (``2.0.0-rc.1`` matches ``2.0.0``,
``<=1.2`` matches ``1.3.0-rc.1``, ``~2.0.0-rc.1`` misses ``2.0.1``), which would
change which tag a source follows.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Iterable

import nodesemver

# ``>= 1.2`` -> ``>=1.2``: after this, every comparator is one whitespace-free word.
_OPERATOR_GAP = re.compile(r"(>=|<=|>|<|=|~>?|\^)\s+")


@dataclass(frozen=True)
class Version:
    """A parsed semantic version; build metadata is dropped (it has no order)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    def __str__(self) -> str:
        pre = f"-{'.'.join(self.prerelease)}" if self.prerelease else ""
        return f"{self.major}.{self.minor}.{self.patch}{pre}"

    def key(self) -> Any:
        """Sort key in semver precedence (prereleases below their release)."""
        return _precedence(str(self))

    def triple(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)


@dataclass(frozen=True)
class Range:
    """A parsed range (``||`` alternatives of comparator sets); callable on a Version."""

    text: str                 # normalised: what nodesemver parsed
    parsed: Any = None        # nodesemver.Range

    def __call__(self, version: Version) -> bool:
        return bool(self.parsed.test(str(version)))


def parse_version(text: str) -> Version | None:
    """``1.2.3``, ``v1.2.3-rc.1``, ``1.2.3+build`` -> Version; anything else -> None."""
    parsed = nodesemver.parse(text.strip(), False)
    if parsed is None:
        return None
    return Version(parsed.major, parsed.minor, parsed.patch,
                   tuple(str(part) for part in parsed.prerelease))


def parse_range(text: str) -> Range:
    """Parse a range such as ``>=1.0.0 <2.0.0`` or ``^1.2``; raise ValueError if malformed."""
    if not text.strip():
        raise ValueError("empty semver range")
    normalised = " || ".join(_alternative(part, text) for part in text.split("||"))
    return Range(normalised, nodesemver.make_range(normalised, False))


def matching_max(tags: Iterable[str], range_text: str) -> str | None:
    """The tag (as given, e.g. ``v1.2.3``) with the highest version in range, or None.

    Tags that are not semantic versions are ignored; a ValueError is raised for a
    malformed range. Of tags with equal versions (``v1.2.3``, ``1.2.3``) the first wins.
    """
    wanted = parse_range(range_text)
    versions = ((tag, parse_version(tag)) for tag in tags)
    in_range = [(version.key(), tag) for tag, version in versions
                if version is not None and wanted(version)]
    return max(in_range, key=lambda pair: pair[0], default=(None, None))[1]


def source_tag(source: str, tags: list[str], range_text: str, where: str, said: str = "") -> str:
    """The highest tag of ``tags`` in the source's range, or a ``SourceError`` naming the
    source, the range and ``where`` the tags were read (a URL, never with credentials),
    then ``said`` (what the remote said, if anything)."""
    from shared.errors import SourceError

    try:
        best = matching_max(tags, range_text)
    except ValueError as exc:
        raise SourceError(f"source {source}: {exc}") from exc
    if best is None:
        raise SourceError(f"source {source}: no tag matches semver range {range_text!r} "
                          f"in {where} ({len(tags)} tags){said}")
    return best


def _alternative(part: str, whole: str) -> str:
    """One alternative as space-separated comparators, each checked on its own."""
    comparators = _OPERATOR_GAP.sub(r"\1", part.replace(",", " ")).split()
    if not comparators:
        raise ValueError(f"invalid semver range {whole!r}: empty alternative")
    if "-" in comparators:
        raise ValueError(f"invalid semver range {whole!r}: hyphen ranges are not supported; "
                         "write >=A <=B")
    for comparator in comparators:
        try:
            nodesemver.make_range(comparator, False)
        except ValueError:
            raise ValueError(f"invalid semver range {whole!r}: cannot read {comparator!r}") from None
    return " ".join(comparators)


_precedence = functools.cmp_to_key(lambda a, b: nodesemver.compare(a, b, False))
