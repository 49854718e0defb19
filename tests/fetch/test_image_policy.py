"""The tag an image policy picks: a table in the manner of Flux's image-reflector-controller
policy tests (semver, numerical, alphabetical, filterTags with extract), and the counts
and words of the choice."""

from __future__ import annotations

import random

import pytest

from shared.spec.images import ImagePolicy, TagFilter
from workers.images.policy import choose, describe


def _policy(kind: str, value: str, pattern: str | None = None, extract: str = "") -> ImagePolicy:
    tag_filter = TagFilter(pattern, extract) if pattern is not None else None
    return ImagePolicy("app", "registry.example.com/apps/app", kind, value, filter=tag_filter)


def _shuffled(tags: list[str]) -> list[str]:
    out = list(tags)
    random.Random(len(tags)).shuffle(out)
    return out


CASES = [
    # (label, kind, value, pattern, extract, tags, expected)
    ("semver: x-range, loose tags ignored", "semver", "1.0.x", None, "",
     ["1.0.0", "1.0.0.1", "1.0.0p", "1.0.1", "1.2.0", "0.1.0"], "1.0.1"),
    ("semver: a leading v", "semver", "1.0.x", None, "", ["v1.2.3", "v1.0.0", "v0.1.0"], "v1.0.0"),
    ("semver: caret", "semver", "^1", None, "", ["1.0.0", "1.1.0", "2.0.0-rc.1", "2.0.0"], "1.1.0"),
    ("semver: no prerelease unless asked", "semver", ">=1.0.0", None, "",
     ["1.0.0", "1.1.0-rc.1"], "1.0.0"),
    ("semver: a prerelease range", "semver", ">=1.1.0-0", None, "",
     ["1.0.0", "1.1.0-rc.1", "1.1.0-rc.2"], "1.1.0-rc.2"),
    ("semver: comma-separated comparators", "semver", ">0,<2.0", None, "",
     ["0.9.0", "1.9.9", "2.0.0"], "1.9.9"),
    ("semver: invalid prefix", "semver", "1.0.x", None, "", ["b1.2.3", "b1.0.0", "b0.1.0"], None),
    ("semver: empty list", "semver", "1.0.x", None, "", [], None),
    ("semver: nothing in range", "semver", "1.0.x", None, "", ["1.2.0"], None),
    ("semver: over an extracted version", "semver", "^2", r"^release-(?P<v>.+)$", "$v",
     ["release-2.1.0", "release-2.3.1", "release-3.0.0", "2.9.9"], "release-2.3.1"),
    ("numerical asc: integers", "numerical", "asc", None, "",
     _shuffled(["62", "88", "73", "72", "15", "16", "15", "29", "33", "91"]), "91"),
    ("numerical desc: integers", "numerical", "desc", None, "",
     _shuffled(["5", "8", "78", "25", "70", "4", "80", "92", "20", "24"]), "4"),
    ("numerical asc: floats", "numerical", "asc", None, "",
     _shuffled(["47.40896403322944", "27.8520927455902", "53.47333823144817",
                "3.2008658570411086"]), "53.47333823144817"),
    ("numerical desc: negative values extracted", "numerical", "desc", r"^n(?P<v>-?[0-9.]+)$",
     "${v}", _shuffled(["n-65.27", "n57.8", "n-90.29", "n16.06"]), "n-90.29"),
    ("numerical asc: unix timestamps", "numerical", "asc", None, "",
     _shuffled(["1606234201", "1606364286", "1606334092", "1606334284"]), "1606364286"),
    ("numerical desc: unix timestamps", "numerical", "desc", None, "",
     _shuffled(["1606234201", "1606364286", "1606334092", "1606334284"]), "1606234201"),
    ("numerical: one value", "numerical", "desc", None, "", ["1"], "1"),
    ("numerical: no number", "numerical", "asc", None, "", ["1a", "b"], None),
    ("numerical: Flux's build tags", "numerical", "asc", r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$", "$ts",
     ["main-abc123-1700000100", "main-def456-1700000300", "main-0aa-99", "feature-1-1800000000"],
     "main-def456-1700000300"),
    ("numerical: a group by number", "numerical", "asc", r"^build-([0-9]+)$", "$1",
     ["build-9", "build-10", "build-x"], "build-10"),
    ("alphabetical asc: Ubuntu CalVer", "alphabetical", "asc", None, "",
     ["16.04", "16.04.1", "16.10", "20.04", "20.10"], "20.10"),
    ("alphabetical desc: Ubuntu CalVer", "alphabetical", "desc", None, "",
     ["16.04", "16.04.1", "16.10", "20.04", "20.10"], "16.04"),
    ("alphabetical asc: code names", "alphabetical", "asc", None, "",
     ["xenial", "yakkety", "zesty", "artful", "bionic"], "zesty"),
    ("alphabetical desc: code names", "alphabetical", "desc", None, "",
     ["xenial", "yakkety", "zesty", "artful", "bionic"], "artful"),
    ("alphabetical asc: timestamps with a prefix", "alphabetical", "asc", None, "",
     ["rel-1606234201", "rel-1606364286", "rel-1606334092"], "rel-1606364286"),
    ("alphabetical asc: RELEASE timestamps extracted", "alphabetical", "asc",
     r"^RELEASE\.(?P<timestamp>.*)Z$", "$timestamp",
     ["RELEASE.2021-01-02T00-00-00Z", "RELEASE.2021-03-04T00-00-00Z", "latest"],
     "RELEASE.2021-03-04T00-00-00Z"),
    ("alphabetical: empty list", "alphabetical", "asc", None, "", [], None),
]


@pytest.mark.parametrize("label,kind,value,pattern,extract,tags,expected", CASES,
                         ids=[case[0] for case in CASES])
def test_the_policy_table(label: str, kind: str, value: str, pattern: str | None, extract: str,
                          tags: list[str], expected: str | None) -> None:
    choice = choose(_policy(kind, value, pattern, extract), tags)
    assert (choice.tag if choice else None) == expected


def test_the_choice_says_why_and_counts_what_it_looked_at() -> None:
    tags = ["1.0.0", "1.1.0", "2.0.0-rc.1", "latest", "-bad", "x" * 129, "1.2.0+build"]
    choice = choose(_policy("semver", "^1"), tags)
    assert choice is not None and choice.tag == "1.1.0"
    assert choice.why == "1.1.0 by semver ^1 (highest of 2 matching of 7 tags)"
    # not valid OCI tags: "-bad", 129 characters, "+build"; not a version: "latest"
    assert (choice.considered, choice.ignored) == (7, 4)


def test_extracted_values_are_shown_and_filter_misses_counted() -> None:
    policy = _policy("numerical", "asc", r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$", "$ts")
    choice = choose(policy, ["main-abc-100", "main-def-300", "v1.0.0", "main-xyz-5"])
    assert choice is not None
    assert choice.why == ("main-def-300 (300) by numerical asc of tags matching "
                          "'^main-[a-f0-9]+-(?P<ts>[0-9]+)$' (extract '$ts') "
                          "(highest of 2 matching of 4 tags)")
    assert choice.ignored == 2
    assert describe(_policy("alphabetical", "desc")) == "alphabetical desc"


def test_ties_do_not_depend_on_the_registry_order() -> None:
    policy = _policy("semver", "^1")
    assert choose(policy, ["1.0.0", "v1.0.0"]) == choose(policy, ["v1.0.0", "1.0.0"])
    lowest = choose(_policy("alphabetical", "desc"), ["b", "a", "c"])
    assert lowest is not None and lowest.why.startswith("a by alphabetical desc (first of 3")


def test_semver_precedence_is_that_of_shared_semver() -> None:
    from shared.semver import parse_version
    from workers.images.policy import _precedence
    versions = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
                "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0",
                "2.0.0-0", "2.0.0"]
    parsed = [parse_version(v) for v in versions]
    shuffled = _shuffled(versions)
    ours = sorted(shuffled, key=lambda v: _precedence(parse_version(v)))  # type: ignore[arg-type]
    theirs = sorted(shuffled, key=lambda v: parse_version(v).key())  # type: ignore[union-attr]
    assert ours == theirs == versions and all(parsed)
