"""Flux's setter markers: the marked scalars of a tree's YAML files set to the chosen tags.

A marker is a comment at the end of the line of the value it marks:

- ``image: HOST/PATH:TAG # {"$imagepolicy": "NS:NAME"}``: the whole reference
  becomes the policy's ``repository:TAG``;
- ``newTag: TAG # {"$imagepolicy": "NS:NAME:tag"}``: the tag only;
- ``newName: HOST/PATH # {"$imagepolicy": "NS:NAME:name"}``: the repository only.

``NS:NAME`` names a policy of ``images:`` (``ImagePolicy.named_by``). The same
markers work in plain manifests, a kustomization's ``images:`` and Helm values
files, since only the comment and the value before it count.

Data flow: ``set_images`` walks ``below`` (never leaving ``root``, never
following a symlink, skipping files over 1 MiB), reads each ``.yaml``/``.yml``
file that mentions ``$imagepolicy``, lets ``ruamel.yaml`` compose it (all its
documents) to find the scalar each marker follows and where it starts and ends
(after any ``&anchor`` or ``!tag``), and rewrites only those characters (nothing
is re-dumped): every other byte of the file, comments,
order, quoting, indentation, line endings, stays as it was. The value keeps its
quoting style; a plain value that would read back as something else than the
string (``1.10`` is a float) is double-quoted. Each rewritten file is parsed
again and must hold the new values where the markers are.

Problems (a marker naming a policy that is not in ``images:``, a marker on a
line with no value, a file that is not YAML) are collected, each as
``FILE:LINE: ...``; the caller commits nothing while there are any. A policy with
no chosen tag yet leaves its markers alone; a chosen tag equal to the current
value changes nothing. Skipped files (symlinks, too large) are named in
``skipped`` and do not stop a commit.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from shared.spec.images import ImagePolicy

MAX_FILE = 1 << 20
SUFFIXES = (".yaml", ".yml")
# What may stand between the marked value and its comment: flow closers and commas.
_MARKER_RE = re.compile(r'[ \t}\],]*#[ \t]*(\{[^#]*"\$imagepolicy"[^#]*\})[ \t]*\r?$')
_ANY_MARKER_RE = re.compile(r'#[ \t]*\{[^#]*"\$imagepolicy"')
_ATTRIBUTES = ("tag", "name")
# A node's marks start at its properties (``&anchor``, ``!tag``); the value follows them.
_PROPERTIES_RE = re.compile(r"(?:[&!][^ \t\r\n]*[ \t]+)*")


@dataclass(frozen=True)
class Change:
    file: str           # relative to the root, with "/"
    line: int           # 1-based
    policy: str
    old: str
    new: str


@dataclass(frozen=True)
class SetResult:
    changes: tuple[Change, ...]
    problems: tuple[str, ...]       # "apps/web.yaml:12: marker names policy 'nope', ..."
    skipped: tuple[str, ...] = ()   # "apps/link.yaml: a symlink, not followed"


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str
    change: Change


def set_images(root: Path, policies: Sequence[ImagePolicy], chosen: Mapping[str, str],
               below: str = ".") -> SetResult:
    """Set every marked value below ``root/below`` to its policy's chosen tag, in place."""
    changes: list[Change] = []
    problems: list[str] = []
    skipped: list[str] = []
    start = _below(Path(root), below, problems)
    if start is not None:
        for path, why in _yaml_files(Path(root), start):
            rel = path.relative_to(root).as_posix()
            if why:
                skipped.append(f"{rel}: {why}")
                continue
            file_changes, file_problems = _set_file(path, rel, policies, chosen)
            changes += file_changes
            problems += file_problems
    return SetResult(changes=tuple(changes), problems=tuple(problems), skipped=tuple(skipped))


def _below(root: Path, below: str, problems: list[str]) -> Path | None:
    """``root/below`` when it stays inside ``root`` and is a real directory; else a problem."""
    parts = Path(below or ".").parts
    if Path(below).is_absolute() or ".." in parts:
        problems.append(f"imageUpdates.path {below!r} leaves the repository")
        return None
    start = root.joinpath(*parts) if parts else root
    here = root
    for part in parts:
        here = here / part
        if here.is_symlink():
            problems.append(f"imageUpdates.path {below!r}: {part} is a symlink")
            return None
    if not start.is_dir():
        problems.append(f"imageUpdates.path {below!r} is not a directory of the repository")
        return None
    return start


def _yaml_files(root: Path, start: Path) -> Iterator[tuple[Path, str]]:
    """(path, why it is skipped or "") of YAML files below ``start``, sorted, no symlinks."""
    for top, dirs, files in os.walk(start, followlinks=False):
        here = Path(top)
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for d in list(dirs):
            if (here / d).is_symlink():
                dirs.remove(d)
                yield here / d, "a symlinked directory, not followed"
        for name in sorted(files):
            path = here / name
            if not name.endswith(SUFFIXES):
                continue
            if not str(path.relative_to(root)).isprintable():
                yield path, "a name with control characters (it would go into the message)"
            elif path.is_symlink():
                yield path, f"a symlink (to {os.readlink(path)!r}), not followed"
            elif not path.is_file():
                continue
            elif path.stat().st_size > MAX_FILE:
                yield path, f"larger than {MAX_FILE} bytes"
            else:
                yield path, ""


def _set_file(path: Path, rel: str, policies: Sequence[ImagePolicy],
              chosen: Mapping[str, str]) -> tuple[list[Change], list[str]]:
    raw = path.read_bytes()
    if b"$imagepolicy" not in raw:
        return [], []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [f"{rel}: not UTF-8 text ({exc.reason} at byte {exc.start})"]
    new_text, changes, problems = set_text(text, rel, policies, chosen)
    if changes and not problems:
        path.write_bytes(new_text.encode("utf-8"))
    return (changes if not problems else []), problems


def set_text(text: str, rel: str, policies: Sequence[ImagePolicy],
             chosen: Mapping[str, str]) -> tuple[str, list[Change], list[str]]:
    """The pure core: ``text`` with its markers set, the changes, and the problems."""
    if text.startswith("\ufeff"):      # libyaml's marks do not count a byte order mark
        new, found, said = set_text(text[1:], rel, policies, chosen)
        return "\ufeff" + new, found, said
    try:
        scalars = list(_marked_scalars(text))
    except YAMLError as exc:
        return text, [], [f"{rel}:{_error_line(exc)}: not valid YAML: {_error_problem(exc)}"]
    edits: list[_Edit] = []
    problems: list[str] = []
    used: set[int] = set()
    for node, marker, start in scalars:
        line = node.start_mark.line + 1
        used.add(node.end_mark.line)
        edit = _edit(node, start, marker, (rel, line), policies, chosen, problems)
        if edit is not None:
            edits.append(edit)
    for number, content in enumerate(text.splitlines()):
        if number not in used and _ANY_MARKER_RE.search(content):
            problems.append(f"{rel}:{number + 1}: an $imagepolicy marker with no value "
                            "before it on its line (a marker follows the value it sets)")
    new_text = _apply(text, edits)
    if edits and not problems:
        problems += _check(new_text, rel, edits)
    return new_text, [e.change for e in edits], problems


def _marked_scalars(text: str) -> Iterator[tuple[ScalarNode, str, int]]:
    """(value node, marker JSON, where its value starts after any ``&anchor``/``!tag``)
    for each value followed on its line by a marker comment."""
    seen: set[int] = set()
    for document in _composer().compose_all(text):
        if document is None:
            continue
        for node in _values(document):
            if id(node) in seen or node.style in ("|", ">"):
                continue
            seen.add(id(node))
            end = node.end_mark.index
            eol = text.find("\n", end)
            found = _MARKER_RE.match(text, end, len(text) if eol < 0 else eol)
            if found:
                start = _PROPERTIES_RE.match(text, node.start_mark.index, end)
                yield node, found.group(1), start.end() if start else node.start_mark.index


@lru_cache(maxsize=1)
def _composer() -> YAML:
    """libyaml's parser through ruamel.yaml (``ruamel.yaml.clib``; ruamel's own pure
    parser when it is missing): composing only, nothing is constructed, and its marks
    count characters, as Python strings do. About five times faster than ``typ="rt"``,
    whose comment tokens are not needed: markers are read from the text after a value."""
    return YAML(typ="safe")


def _values(node: Node) -> Iterator[ScalarNode]:
    """Every scalar that is a value (mapping values, sequence items), keys excluded."""
    if isinstance(node, ScalarNode):
        yield node
    elif isinstance(node, MappingNode):
        for _key, value in node.value:
            yield from _values(value)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from _values(item)


def _edit(node: ScalarNode, start: int, marker: str, place: tuple[str, int],
          policies: Sequence[ImagePolicy], chosen: Mapping[str, str],
          problems: list[str]) -> _Edit | None:
    rel, line = place
    where = f"{rel}:{line}"
    parsed = _parse_marker(marker)
    if isinstance(parsed, str):
        problems.append(f"{where}: {parsed}")
        return None
    found = next(((p, attribute) for reference, attribute in parsed
                  for p in policies if p.named_by(reference)), None)
    if found is None:
        problems.append(f"{where}: marker names policy {parsed[0][0]!r}, "
                        "which is not in images:")
        return None
    policy, attribute = found
    if node.start_mark.line != node.end_mark.line:
        problems.append(f"{where}: the value marked for {policy.name} spans lines")
        return None
    tag = chosen.get(policy.name)
    if tag is None:
        return None
    old = str(node.value)
    new = {"tag": tag, "name": policy.repository}.get(attribute, f"{policy.repository}:{tag}")
    if new == old:
        return None
    return _Edit(start, node.end_mark.index, _render(new, node.style),
                 Change(file=rel, line=line, policy=policy.name, old=old, new=new))


def _parse_marker(marker: str) -> list[tuple[str, str]] | str:
    """The readings (``NS:NAME`` or ``NAME``, attribute ``""``/``tag``/``name``) of a
    marker, the first that names a policy wins; or what is wrong with it.

    ``X:tag`` is Flux's namespace ``X`` and policy ``tag``; when no policy is named
    ``tag`` it is also read as policy ``X``'s tag (a marker written without namespace).
    """
    try:
        value = json.loads(marker)
    except ValueError:
        return f"marker {marker} is not a JSON object"
    if not isinstance(value, dict) or not isinstance(value.get("$imagepolicy"), str):
        return f'marker {marker} must be {{"$imagepolicy": "NAMESPACE:NAME"}}'
    parts = value["$imagepolicy"].split(":")
    if len(parts) == 3 and parts[2] == "digest":
        return "the :digest marker is not supported (fleetsync sets tags; use :tag)"
    if len(parts) == 3 and parts[2] not in _ATTRIBUTES:
        return f"marker attribute {parts[2]!r} is not one of tag, name"
    if len(parts) > 3 or not all(parts):
        return f"marker reference {value['$imagepolicy']!r} is not NAMESPACE:NAME[:tag|:name]"
    if len(parts) == 3:
        return [(":".join(parts[:2]), parts[2])]
    readings = [(":".join(parts), "")]
    if len(parts) == 2 and parts[1] in _ATTRIBUTES:
        readings.append((parts[0], parts[1]))
    return readings


def _render(value: str, style: str | None) -> str:
    """``value`` as a YAML scalar in ``style``; a plain one quoted when it would not read back."""
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or not _plain_reads_back(value):
        return json.dumps(value)
    return value


@lru_cache(maxsize=1024)
def _plain_reads_back(value: str) -> bool:
    if not value or value != value.strip() or any(c in value for c in "#\n\r\t{}[],&*!|>'\"%@`"):
        return False
    try:
        loaded = _composer().load(f"k: {value}\n")
    except YAMLError:
        return False
    return isinstance(loaded, dict) and loaded.get("k") == value


def _apply(text: str, edits: list[_Edit]) -> str:
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[:edit.start] + edit.text + text[edit.end:]
    return text


def _check(new_text: str, rel: str, edits: list[_Edit]) -> list[str]:
    """The rewritten text must parse and hold each new value under its marker."""
    try:
        found = {node.start_mark.line + 1: str(node.value)
                 for node, _marker, _start in _marked_scalars(new_text)}
    except YAMLError as exc:
        return [f"{rel}: setting the markers would break the file ({_error_problem(exc)})"]
    return [f"{rel}:{e.change.line}: the new value {e.change.new!r} does not read back"
            for e in edits if found.get(e.change.line) != e.change.new]


def _error_line(exc: YAMLError) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return int(mark.line) + 1 if mark is not None else 1


def _error_problem(exc: YAMLError) -> str:
    return str(getattr(exc, "problem", None) or exc).strip()
