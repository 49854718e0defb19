"""Reading a repository checkout without ever leaving it.

Rendering must not read outside the checkout (DESIGN: security defaults), and a
repository is untrusted input: paths with ``..``, symlinks pointing at ``/etc``,
symlink loops and enormous files all occur. This module is the only place that
turns a repository path into file contents for a plain-YAML application, and
the place the kustomize stage uses to vet the directories it will hand over.

Data flow: ``resolve_inside(tree, rel)`` -> directory; ``workers.render.layout`` decides
which files of it are read; ``read_files`` -> ``RawDoc`` per file, each checked
against the size caps before it is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from shared.errors import RenderError

MAX_FILE_BYTES = 1024 * 1024          # one manifest file
MAX_TOTAL_BYTES = 16 * 1024 * 1024    # everything one application renders from
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class RawDoc:
    """The text of one rendered source before substitution and parsing.

    ``source`` names it in errors: a file relative to the checkout, or the
    kustomization directory with ``(kustomize build)``.
    """

    source: str
    text: str


def inside(tree: Path, path: Path) -> bool:
    """Whether ``path`` (already resolved) is ``tree`` or below it."""
    return path == tree or tree in path.parents


def resolve_inside(tree: Path, rel: str) -> Path:
    """The real directory ``rel`` names in ``tree``; refuse anything that leaves it."""
    root = tree.resolve()
    if Path(rel).is_absolute():
        raise RenderError(f"path {rel!r} must be relative to the repository root")
    target = (root / rel).resolve()
    if not inside(root, target):
        raise RenderError(f"path {rel!r} leaves the repository checkout")
    if not target.is_dir():
        raise RenderError(f"path {rel!r} does not exist in the repository (or is not a directory)")
    return target


def display(tree: Path, path: Path) -> str:
    """``path`` relative to the checkout, for messages; never an absolute temp path."""
    try:
        return path.relative_to(tree).as_posix() or "."
    except ValueError:
        return path.name


def check_size(size: int, total: int, where: str) -> int:
    """The new running total; refuse a file or a sum over the caps."""
    if size > MAX_FILE_BYTES:
        raise RenderError(f"{where}: file is {size} bytes, larger than the {MAX_FILE_BYTES} byte limit")
    if total + size > MAX_TOTAL_BYTES:
        raise RenderError(f"{where}: manifests add up to more than {MAX_TOTAL_BYTES} bytes")
    return total + size


def read_text(real: Path, where: str) -> str:
    try:
        return real.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RenderError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise RenderError(f"{where}: cannot read: {exc.strerror}") from exc


def read_files(files: Iterable[tuple[str, Path]], total: int = 0) -> tuple[list[RawDoc], int]:
    """Each ``(where, real path)`` as a ``RawDoc``, and the running total of bytes.

    Sizes are checked with ``stat`` before anything is read; ``total`` carries
    what the application already rendered from (other files, kustomize output).
    """
    docs: list[RawDoc] = []
    for where, real in files:
        total = check_size(real.stat().st_size, total, where)
        docs.append(RawDoc(where, read_text(real, where)))
    return docs, total


def refuse_escaping_links(tree: Path, directory: Path) -> None:
    """Refuse any symlink below ``directory`` (hidden ones too) that leaves ``tree``.

    Used before handing a directory to kustomize, which would follow them.
    """
    for top, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = Path(top) / name
            if path.is_symlink() and not inside(tree, path.resolve()):
                raise RenderError(f"symlink {display(tree, path)!r} points outside the repository checkout")
