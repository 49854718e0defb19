"""``defaultBranch: true``: the remote's default branch, alone among the Git refs of a source."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shared.spec.load import validate_file
from shared.spec.model import DEFAULT_BRANCH

FLEET = """\
sources:
  - name: platform
    url: https://git.example.com/gitops.git
    REF
clusters:
  - name: dev
applications:
  - name: web
    source: platform
    path: apps/web
    clusters: {names: [dev]}
"""


def validate(tmp_path: Path, ref_lines: str):
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET.replace("REF", textwrap.indent(ref_lines, "    ").lstrip()))
    return validate_file(str(path))


def test_default_branch_alone_follows_the_remotes_head(tmp_path: Path) -> None:
    fleet, problems, _ = validate(tmp_path, "defaultBranch: true")
    assert problems == []
    assert fleet is not None
    source = fleet.sources["platform"]
    assert (source.ref_kind, source.ref) == (DEFAULT_BRANCH, "")


@pytest.mark.parametrize("other", ["branch: main", "tag: v1.0.0", "semver: '>=1.0.0'",
                                   "commit: abcdef1"])
def test_default_branch_with_another_ref_is_refused_at_its_line(tmp_path: Path,
                                                                other: str) -> None:
    fleet, problems, _ = validate(tmp_path, f"{other}\ndefaultBranch: true")
    kind = other.split(":")[0]
    assert fleet is None
    assert problems == [
        f"{tmp_path / 'fleet.yaml'}:5: sources[0].defaultBranch: follows the remote's default "
        f"branch: give it without branch, tag, semver or commit (found {kind})"]


def test_default_branch_false_is_no_ref(tmp_path: Path) -> None:
    _, problems, _ = validate(tmp_path, "defaultBranch: false")
    assert problems == [f"{tmp_path / 'fleet.yaml'}:2: sources[0]: give exactly one of branch, "
                        "tag, semver, commit"]


def test_default_branch_must_be_a_boolean(tmp_path: Path) -> None:
    _, problems, _ = validate(tmp_path, "defaultBranch: main")
    assert (f"{tmp_path / 'fleet.yaml'}:4: sources[0].defaultBranch: must be true or false, "
            "not a string") in problems


def test_a_helm_repository_has_no_default_branch(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET.replace("url: https://git.example.com/gitops.git\n    REF",
                                  "helmRepository: https://charts.example.com\n    "
                                  "defaultBranch: true"))
    _, problems, _ = validate_file(str(path))
    assert any("sources[0].defaultBranch: does not apply to a helmRepository" in p
               for p in problems)
