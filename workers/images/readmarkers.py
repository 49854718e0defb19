"""Which value every setter marker of a tree holds now: read-only, line by line.

``fleetsync images status`` shows, per marker, the file, the line and the value in
Git; the setters (``workers.images.setters``) are the ones that change them. This
reader only looks: a line ``KEY: VALUE # {"$imagepolicy": "NS:NAME[:tag|:name]"}``
gives its VALUE (quotes taken off), the policy's NAME and which part it holds
(``image``, ``tag`` or ``name``). Files are capped in number and size, and links out
of the tree are not followed: a repository is hostile input like any other.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

MAX_FILES = 5000
MAX_FILE_BYTES = 1 << 20
MAX_MARKERS = 500
SUFFIXES = (".yaml", ".yml")
_LINE = re.compile(r'^\s*(?:-\s+)?(?P<key>[^#:]+):\s*(?P<value>[^#]*?)\s*'
                   r'#\s*(?P<marker>\{[^#]*"\$imagepolicy"[^#]*\})\s*$')


def markers(root: Path, below: str = ".") -> list[dict[str, Any]]:
    """Every marker under ``root/below``: ``file`` (relative), ``line``, ``policy``, ``part``,
    ``value``, in file and line order."""
    found: list[dict[str, Any]] = []
    for path in _files(root, below):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        rel = path.relative_to(root).as_posix()
        found.extend(_in_text(text, rel))
        if len(found) >= MAX_MARKERS:
            return found[:MAX_MARKERS]
    return found


def _in_text(text: str, rel: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(text.splitlines(), 1):
        if "$imagepolicy" not in line:
            continue
        match = _LINE.match(line)
        if not match:
            continue
        reference = _reference(match["marker"])
        if reference is None:
            continue
        policy, part = reference
        yield {"file": rel, "line": number, "policy": policy, "part": part,
               "value": match["value"].strip().strip("'\"")}


def _reference(marker: str) -> tuple[str, str] | None:
    """``(NAME, part)`` of a marker's ``NS:NAME[:tag|:name]``; None when it is not one."""
    try:
        said = json.loads(marker).get("$imagepolicy")
    except (ValueError, AttributeError):
        return None
    if not isinstance(said, str):
        return None
    parts = said.split(":")
    part = "image"
    if len(parts) > 1 and parts[-1] in ("tag", "name"):
        part = parts.pop()
    return (parts[-1], part) if parts and parts[-1] else None


def _files(root: Path, below: str) -> Iterator[Path]:
    top = (root / below).resolve()
    base = root.resolve()
    if not (top == base or base in top.parents) or not top.is_dir():
        return
    seen = 0
    for folder, dirs, files in os.walk(top):    # os.walk does not follow links to folders
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            path = Path(folder) / name
            if not name.endswith(SUFFIXES) or path.is_symlink():
                continue
            seen += 1
            if seen > MAX_FILES:
                return
            yield path
