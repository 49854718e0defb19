"""Semantic versions and version ranges, for sources that follow a ``semver:`` ref.

The spec loader calls ``parse_range`` to reject a bad range when the fleet file
is read; the Git fetcher calls ``matching_max`` with the repository's tags to
pick the revision. Both are pure: text in, value out.

Range syntax (the npm/node-semver subset that Git tags need): comparators
``>= <= > < =`` with full or partial versions, tilde ``~1.2``, caret ``^1.2.3``,
x-ranges ``1.2.x`` / ``1.*`` / ``*``; comparators separated by spaces or commas
must all hold, and ``||`` joins alternatives. A prerelease version matches only
when a comparator of the same alternative names a prerelease of the same
``major.minor.patch`` (node-semver's rule), so ``^1.0`` never picks ``1.3.0-rc.1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

_VERSION_RE = re.compile(
    r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_PART = r"(\*|[xX]|\d+)"
_COMPARATOR_RE = re.compile(
    rf"\s*(>=|<=|>|<|=|~|\^)?\s*v?{_PART}(?:\.{_PART})?(?:\.{_PART})?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?\s*(?:,\s*)?"
)
_WILDCARDS = {"*", "x", "X"}


@dataclass(frozen=True)
class Version:
    """A parsed semantic version; build metadata is dropped (it has no order)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    def key(self) -> tuple:
        """Sort key: numeric identifiers below alphanumeric ones, releases above prereleases."""
        if not self.prerelease:
            return (self.major, self.minor, self.patch, 1, ())
        ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0, ids)

    def triple(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)


_OPS: dict[str, Callable[[tuple, tuple], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "=": lambda a, b: a == b,
}


@dataclass(frozen=True)
class Comparator:
    op: str                  # one of _OPS
    version: Version

    def test(self, version: Version) -> bool:
        return _OPS[self.op](version.key(), self.version.key())


@dataclass(frozen=True)
class Range:
    """Alternatives (``||``) of comparator sets that must all hold; callable on a Version."""

    alternatives: tuple[tuple[Comparator, ...], ...]

    def __call__(self, version: Version) -> bool:
        return any(_set_matches(cs, version) for cs in self.alternatives)


def parse_version(text: str) -> Version | None:
    """``1.2.3``, ``v1.2.3-rc.1``, ``1.2.3+build`` -> Version; anything else -> None."""
    m = _VERSION_RE.fullmatch(text.strip())
    if not m:
        return None
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    return Version(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre)


def parse_range(text: str) -> Range:
    """Parse a range such as ``>=1.0.0 <2.0.0`` or ``^1.2``; raise ValueError if malformed."""
    if not text.strip():
        raise ValueError("empty semver range")
    return Range(tuple(_parse_set(part, text) for part in text.split("||")))


def matching_max(tags: Iterable[str], range_text: str) -> str | None:
    """The tag (as given, e.g. ``v1.2.3``) with the highest version in range, or None.

    Tags that are not semantic versions are ignored; a ValueError is raised for a
    malformed range.
    """
    wanted = parse_range(range_text)
    best: tuple[tuple, str] | None = None
    for tag in tags:
        version = parse_version(tag)
        if version is None or not wanted(version):
            continue
        if best is None or version.key() > best[0]:
            best = (version.key(), tag)
    return best[1] if best else None


def _set_matches(comparators: tuple[Comparator, ...], version: Version) -> bool:
    if not all(c.test(version) for c in comparators):
        return False
    if not version.prerelease:
        return True
    return any(c.version.prerelease and c.version.triple() == version.triple() for c in comparators)


def _parse_set(part: str, whole: str) -> tuple[Comparator, ...]:
    comparators: list[Comparator] = []
    pos, part = 0, part.strip()
    if not part:
        raise ValueError(f"invalid semver range {whole!r}: empty alternative")
    while pos < len(part):
        m = _COMPARATOR_RE.match(part, pos)
        if not m or m.end() == pos:
            raise ValueError(f"invalid semver range {whole!r}: cannot read {part[pos:]!r}")
        try:
            comparators.extend(_expand(m.group(1) or "=", m.group(2, 3, 4), m.group(5)))
        except ValueError as err:
            raise ValueError(f"invalid semver range {whole!r}: {err}") from None
        pos = m.end()
    return tuple(comparators)


def _expand(op: str, parts: tuple[str | None, ...], pre: str | None) -> list[Comparator]:
    """Turn one written comparator (maybe partial, tilde, caret) into plain ones."""
    nums = _known_parts(parts)
    if pre and len(nums) < 3:
        raise ValueError("a prerelease needs a full major.minor.patch version")
    prerelease = tuple(pre.split(".")) if pre else ()
    if len(nums) == 3 and op in _OPS:
        return [Comparator(op, _version(nums, prerelease))]
    low = _version(nums, prerelease)
    if op == "~":
        return _bounded(low, _bump(nums, min(len(nums), 2) - 1) if nums else None)
    if op == "^":
        return _bounded(low, _caret_upper(nums))
    return _partial(op, nums, low)


def _known_parts(parts: tuple[str | None, ...]) -> list[int]:
    """Leading numeric parts; a wildcard makes every later part a wildcard too."""
    nums: list[int] = []
    for p in parts:
        if p is None or p in _WILDCARDS:
            break
        nums.append(int(p))
    return nums


def _bump(nums: list[int], index: int) -> Version:
    """The first version past the given prefix, e.g. [1, 2] bumped at 1 -> 1.3.0."""
    head = nums[:index] + [nums[index] + 1]
    return _version(head)


def _version(nums: list[int], prerelease: tuple[str, ...] = ()) -> Version:
    """A version from a prefix of its numbers; missing ones are 0."""
    major, minor, patch = (nums + [0, 0, 0])[:3]
    return Version(major, minor, patch, prerelease)


def _caret_upper(nums: list[int]) -> Version | None:
    """``^`` allows changes that keep the left-most non-zero part of the version."""
    if not nums:
        return None
    for i, n in enumerate(nums):
        if n != 0:
            return _bump(nums, i)
    return _bump(nums, len(nums) - 1)


def _bounded(low: Version, high: Version | None) -> list[Comparator]:
    upper = [Comparator("<", high)] if high else []
    return [Comparator(">=", low), *upper]


def _partial(op: str, nums: list[int], low: Version) -> list[Comparator]:
    """Comparators against a partial version such as ``1.2`` or ``1.x``."""
    if not nums:
        return [] if op in ("=", ">=", "<=") else [Comparator("<", Version(0, 0, 0))]
    after = _bump(nums, len(nums) - 1)
    return {
        "=": _bounded(low, after),
        ">=": [Comparator(">=", low)],
        ">": [Comparator(">=", after)],
        "<": [Comparator("<", low)],
        "<=": [Comparator("<", after)],
    }[op]
