"""Semantic version ranges: what the Git fetcher relies on to pick a tag."""

from __future__ import annotations

import pytest

from shared.semver import Version, matching_max, parse_range, parse_version

TAGS = ["v1.0.0", "v1.2.3", "v1.3.0-rc.1", "v2.0.0", "latest", "v1.2", "release-3"]


@pytest.mark.parametrize("wanted, best", [
    (">=1.0.0 <2.0.0", "v1.2.3"),
    (">=1.0.0, <2.0.0", "v1.2.3"),
    (">= 1.0.0 < 2.0.0", "v1.2.3"),
    ("^1.0", "v1.2.3"),
    ("^1.0.0", "v1.2.3"),
    ("~1.2", "v1.2.3"),
    ("~1.2.0", "v1.2.3"),
    ("1.x", "v1.2.3"),
    ("1.2.x", "v1.2.3"),
    ("1", "v1.2.3"),
    ("*", "v2.0.0"),
    ("=1.0.0", "v1.0.0"),
    ("1.0.0", "v1.0.0"),
    (">1.2", "v2.0.0"),
    ("<=1.2", "v1.2.3"),
    ("<1.2.3", "v1.0.0"),
    ("^3.0", None),
    ("<1.0.0 || >=2.0.0", "v2.0.0"),
])
def test_matching_max_picks_the_highest_release_in_range(wanted: str, best: str | None) -> None:
    assert matching_max(TAGS, wanted) == best


def test_prerelease_matches_only_when_the_range_names_one_of_the_same_version() -> None:
    assert matching_max(TAGS, ">=1.3.0-rc.0 <2.0.0") == "v1.3.0-rc.1"
    assert matching_max(TAGS, ">=1.2.0-rc.0 <2.0.0") == "v1.2.3"


def test_caret_on_zero_versions_keeps_the_leftmost_nonzero_part() -> None:
    tags = ["0.2.3", "0.2.9", "0.3.0", "0.0.3", "0.0.4"]
    assert matching_max(tags, "^0.2.3") == "0.2.9"
    assert matching_max(tags, "^0.0.3") == "0.0.3"
    assert matching_max(tags, "^0") == "0.3.0"


def test_tags_without_v_and_with_build_metadata_are_versions() -> None:
    assert matching_max(["1.4.0+build.7", "v1.3.9"], "^1") == "1.4.0+build.7"


def test_no_tags_no_match() -> None:
    assert matching_max([], "*") is None


def test_version_order_follows_semver() -> None:
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
               "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"]
    keys = [v.key() for v in map(parse_version, ordered) if v is not None]
    assert keys == sorted(keys) and len(keys) == len(ordered)


def test_parse_version() -> None:
    assert parse_version("v1.2.3-rc.1") == Version(1, 2, 3, ("rc", "1"))
    assert parse_version("1.2") is None
    assert parse_version("01.2.3") is None
    assert parse_version("latest") is None


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3 - 2.0.0", ">=1.x-rc.1", "||", ">=1.0.0 foo", "=>1.0.0"])
def test_malformed_ranges_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="semver range"):
        parse_range(bad)


def test_range_is_callable_on_versions() -> None:
    in_range = parse_range("~1.2")
    assert in_range(Version(1, 2, 9)) and not in_range(Version(1, 3, 0))


@pytest.mark.parametrize("wanted, tags, best", [
    ("2.0.0-rc.1", ["2.0.0", "2.0.0-rc.1"], "2.0.0-rc.1"),          # exact prerelease, not the release
    ("<=1.2", ["1.2.3", "1.3.0-rc.1"], "1.2.3"),                      # no prerelease named
    ("<1.2.3", ["1.2.2", "1.2.3-rc.1"], "1.2.2"),
    ("~2.0.0-rc.1", ["2.0.0-rc.1", "2.0.1"], "2.0.1"),                # releases after the rc count
    (">=1.3.0-rc.0 <1.3.0", ["1.3.0", "1.3.0-rc.2"], "1.3.0-rc.2"),  # only the 1.3.0 candidates
    (">=2.0.0-rc.1 ^1.x", ["1.9.0", "2.0.0"], None),                  # every comparator must hold
])
def test_prerelease_comparators_follow_node_semver(wanted: str, tags: list[str],
                                                   best: str | None) -> None:
    assert matching_max(tags, wanted) == best


@pytest.mark.parametrize("bad, named", [(">=1.0.0 foo", "'foo'"), ("^1 || >=2 <", "'<'"),
                                        ("1.0.0, =>2", "'=>2'")])
def test_a_bad_range_names_the_comparator_it_cannot_read(bad: str, named: str) -> None:
    with pytest.raises(ValueError, match=f"cannot read {named}$"):
        parse_range(bad)


def test_equal_versions_keep_the_first_tag() -> None:
    assert matching_max(["v1.2.3", "1.2.3"], "^1") == "v1.2.3"
