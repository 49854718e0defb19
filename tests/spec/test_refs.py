"""Branch and tag names in the fleet spec: what git would refuse is refused at validate time."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path
from typing import Callable

import pytest

from shared.refnames import ref_name_problem
from shared.spec.load import validate_file

FLEET = """\
sources:
  - name: platform
    url: https://git.example.com/gitops.git
    branch: main
clusters:
  - name: dev
applications:
  - name: web
    source: platform
    path: apps/web
    clusters: {names: [dev]}
"""

Problems = Callable[[str], list[str]]


@pytest.fixture
def problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Problems:
    """Validate FLEET with its ``branch: main`` line replaced; return the problems."""
    monkeypatch.chdir(tmp_path)

    def run(ref_line: str) -> list[str]:
        Path("fleet.yaml").write_text(textwrap.dedent(FLEET).replace("branch: main", ref_line))
        fleet, found, _ = validate_file("fleet.yaml")
        assert (fleet is None) == bool(found)
        return found
    return run


def test_head_is_refused_as_a_branch_with_the_place_and_a_hint(problems: Problems) -> None:
    assert problems("branch: HEAD") == [
        "fleet.yaml:4: sources[0].branch: 'HEAD' is a symbolic ref, not a branch; to follow "
        "the remote's default branch, give defaultBranch: true instead of branch (or name "
        "the branch, for example main)"]


def test_head_is_refused_as_a_tag(problems: Problems) -> None:
    assert problems("tag: HEAD") == [
        "fleet.yaml:4: sources[0].tag: 'HEAD' is a symbolic ref, not a tag; "
        "name the tag (for example v1.2.0)"]


@pytest.mark.parametrize("name", ["FETCH_HEAD", "ORIG_HEAD", "@"])
def test_other_symbolic_refs_are_refused(problems: Problems, name: str) -> None:
    assert problems(f"branch: '{name}'") == [
        f"fleet.yaml:4: sources[0].branch: '{name}' is a symbolic ref, not a branch; "
        "name the branch (for example main)"]


@pytest.mark.parametrize("line, message", [
    ("branch: refs/heads/main", "'refs/heads/main' is a full ref name; give the branch name alone ('main')"),
    ("tag: refs/tags/v1.2.0", "'refs/tags/v1.2.0' is a full ref name; give the tag name alone ('v1.2.0')"),
    ("branch: refs/tags/v1", "'refs/tags/v1' is a full ref name; give the branch name alone"),
])
def test_full_ref_names_are_refused(problems: Problems, line: str, message: str) -> None:
    field = line.split(":")[0]
    assert problems(line) == [f"fleet.yaml:4: sources[0].{field}: {message}"]


@pytest.mark.parametrize("yaml_value, reason", [
    ("a..b", "it contains '..'"),
    ("'feature~1'", "it contains '~'"),
    ("'main^'", "it contains '^'"),
    ("'a:b'", "it contains ':'"),
    ("'has space'", "it contains a space"),
    ('"tab\\there"', "it contains a control character"),
    ('"bell\\x07"', "it contains a control character"),
    ("'what?'", "it contains '?'"),
    ("'rel*'", "it contains '*'"),
    ("'x[1]'", "it contains '['"),
    ("'back\\slash'", "it contains '\\'"),
    ("'main@{1}'", "it contains '@{'"),
    ("a//b", "it contains '//'"),
    ("/main", "it starts or ends with '/'"),
    ("main/", "it starts or ends with '/'"),
    ("'-main'", "it starts with '-'"),
    ("main.", "it ends with '.'"),
    (".hidden", "the part '.hidden' starts with '.'"),
    ("team/.x", "the part '.x' starts with '.'"),
    ("main.lock", "the part 'main.lock' ends with '.lock'"),
    ("a.lock/b", "the part 'a.lock' ends with '.lock'"),
])
def test_names_git_refuses_are_refused_with_the_rule(problems: Problems, yaml_value: str,
                                                     reason: str) -> None:
    found = problems(f"branch: {yaml_value}")
    assert len(found) == 1 and found[0].startswith("fleet.yaml:4: sources[0].branch: ")
    assert found[0].endswith(f"is not a valid Git branch name: {reason}")


@pytest.mark.parametrize("name", ["main", "feature/x", "release-1.2", "v1.2.0", "team/a.b/c",
                                  "x@y", "héllo", "HEADS-UP", "main.locked"])
def test_ordinary_names_are_accepted(problems: Problems, name: str) -> None:
    assert problems(f"branch: {name}") == []
    assert problems(f"tag: {name}") == []


NAMES = ["main", "a..b", "feature~1", "a:b", "has space", "tab\there", "what?", "x[1]", "a@{1}",
         "a//b", "/main", "main/", "-main", "main.", ".hidden", "team/.x", "main.lock",
         "a.lock/b", "feature/x", "x@y", "héllo", "main.locked", "a/b/c", "@{", "a\\b"]


@pytest.mark.parametrize("name", NAMES)
def test_rules_agree_with_git_check_ref_format(name: str, tmp_path: Path) -> None:
    """The pure function accepts exactly what ``git check-ref-format --branch`` accepts."""
    git = subprocess.run(["git", "check-ref-format", "--branch", name], cwd=tmp_path,
                         capture_output=True, env={"PATH": os.environ["PATH"], "LC_ALL": "C"})
    assert (ref_name_problem("branch", name) is None) == (git.returncode == 0), git.stderr
