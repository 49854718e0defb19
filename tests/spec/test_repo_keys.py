"""The application keys for real repository layouts: directory, allowEmpty, force, createNamespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.spec.model import Application, Directory
from shared.spec.load import validate_file

HEAD = """\
sources:
  - name: gitops
    url: https://git.example.com/gitops.git
    branch: main
clusters:
  - name: dev
applications:
  - name: web
    source: gitops
    path: apps/web
    clusters: {names: [dev]}
"""


def check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str) -> tuple[Application | None, list[str]]:
    monkeypatch.chdir(tmp_path)
    Path("fleet.yaml").write_text(HEAD + extra)
    fleet, problems, _ = validate_file("fleet.yaml")
    return (fleet.applications["web"] if fleet else None), problems


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app, problems = check(tmp_path, monkeypatch, "")
    assert problems == [] and app is not None
    assert app.directory == Directory(recurse=False, include=(), exclude=())
    assert (app.allow_empty, app.force, app.create_namespace) == (False, False, False)


def test_every_key_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app, problems = check(tmp_path, monkeypatch, """\
    namespace: web
    directory: {recurse: true, include: ["*.yaml", "base/*"], exclude: [all-in-one/*]}
    allowEmpty: true
    force: true
    createNamespace: true
""")
    assert problems == [] and app is not None
    assert app.directory == Directory(True, ("*.yaml", "base/*"), ("all-in-one/*",))
    assert (app.allow_empty, app.force, app.create_namespace) == (True, True, True)


def test_problems_have_file_line_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, problems = check(tmp_path, monkeypatch, """\
    directory: {recurse: "yes", include: "*.yaml", exclude: [/etc/*, ../x], depth: 2}
    allowEmpty: 1
    force: "true"
    createNamespace: true
""")
    assert problems == [
        "fleet.yaml:12: applications[0].directory: unknown key 'depth' "
        "(expected one of: recurse, include, exclude)",
        "fleet.yaml:12: applications[0].directory.recurse: must be true or false, not a string",
        "fleet.yaml:12: applications[0].directory.include: must be a list, not a string",
        "fleet.yaml:12: applications[0].directory.exclude[0]: '/etc/*' must be relative to the "
        "application path, not absolute",
        "fleet.yaml:12: applications[0].directory.exclude[1]: must not contain '..' segments",
        "fleet.yaml:13: applications[0].allowEmpty: must be true or false, not a number",
        "fleet.yaml:14: applications[0].force: must be true or false, not a string",
        "fleet.yaml:15: applications[0].createNamespace: needs the application's namespace: "
        "set namespace to the one to create",
    ]
