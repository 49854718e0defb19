"""How a plain application directory is read: which files, which kustomizations, which refusals.

Repositories are laid out in many ways, and the two tools people come from
disagree. Flux builds a directory without a ``kustomization.yaml`` by reading
its manifests and building every sub-directory that holds one as a
kustomization; ``kubectl apply -f DIR`` and Argo CD read only the directory
itself unless told to recurse. Reading everything recursively (what fleetsync
did first) breaks common layouts: an ``all-in-one/`` variant beside the split
files defines every object twice, and a chart-like tree keeps non-Kubernetes
YAML under ``files/``.

So, per ``shared.spec.model.Directory``:

    default          own files + immediate sub-directories with a kustomization
                     (Flux); other sub-directories are not read
    recurse: true    every sub-directory too (Argo CD); those with a
                     kustomization are built, not read file by file
    include/exclude  globs over the path relative to the application directory;
                     a glob without ``/`` matches the name. Exclude wins, and an
                     excluded directory is not entered.

Formats fleetsync does not render are refused by name rather than skipped: a
``.jsonnet``/``.libsonnet``/``.cue`` file, or a ``Chart.yaml`` in a directory
that would be read, fails the render with ``not supported: ...`` naming the
file, so an application rewritten into one of them cannot render to nothing. A
sub-directory with both ``Chart.yaml`` and a kustomization is built only when
the kustomization renders that chart itself (``workers.render.overchart``).

``scan`` only decides; ``workers.render.engine`` reads the files and runs kustomize.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from shared.errors import RenderError
from shared.spec.model import Directory
from workers.render.tree import MANIFEST_SUFFIXES, display, inside
from workers.render.kustomize import kustomization_file
from workers.render.overchart import refuse_nested

CHART_FILE = "Chart.yaml"
UNSUPPORTED = {
    ".jsonnet": "Jsonnet is not rendered by fleetsync; commit its output as YAML (jsonnet -y)",
    ".libsonnet": "Jsonnet is not rendered by fleetsync; commit its output as YAML (jsonnet -y)",
    ".cue": "CUE is not rendered by fleetsync; commit its output as YAML (cue export --out yaml)",
}
_CHART = ("a Helm chart ({file}) inside a plain directory is not rendered; point an "
          "application's path at the chart's own directory to render it with helm")
_HOW_TO_SKIP = "; or leave it out with directory.exclude"


class Unsupported(RenderError):
    """A file of a format that fleetsync knows but does not render."""

    reason = "RenderUnsupported"


@dataclass
class Layout:
    """What a plain directory renders from, each as ``(path relative to the checkout, real path)``."""

    files: list[tuple[str, Path]] = field(default_factory=list)
    kustomizations: list[tuple[str, Path]] = field(default_factory=list)


def matches(rel: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``rel`` (posix, relative to the application directory) matches a glob.

    A glob with ``/`` is matched against the whole relative path (``*`` crosses
    ``/``, as in Argo CD); one without against the last segment.
    """
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatchcase(rel, p) or fnmatchcase(rel + "/", p) if "/" in p else fnmatchcase(name, p)
               for p in patterns)


def included(rel: str, options: Directory) -> bool:
    if options.include:
        return matches(rel, options.include)
    return PurePosixPath(rel).suffix.lower() in MANIFEST_SUFFIXES


def refuse_unsupported(tree: Path, path: Path) -> None:
    """``Unsupported`` naming the file when ``path`` is a format we do not render."""
    why = UNSUPPORTED.get(path.suffix.lower())
    if why is not None:
        raise Unsupported(f"{display(tree, path)}: not supported: {why}{_HOW_TO_SKIP}")


def refuse_chart(tree: Path, directory: Path) -> None:
    chart = directory / CHART_FILE
    if chart.is_file():
        where = display(tree, chart)
        raise Unsupported(f"{where}: not supported: {_CHART.format(file=where)}{_HOW_TO_SKIP}")


def scan(tree: Path, directory: Path, options: Directory) -> Layout:
    """The files and kustomizations a plain ``directory`` renders from (both resolved paths)."""
    refuse_chart(tree, directory)
    layout = Layout()
    _scan(tree, directory, directory, PurePosixPath(), frozenset({directory}), options, layout)
    layout.files.sort()
    layout.kustomizations.sort()
    return layout


def _real(tree: Path, entry: os.DirEntry[str], logical: Path) -> Path:
    """The entry's real path; a symlink leaving the checkout is refused."""
    real = Path(entry.path)
    if entry.is_symlink():
        real = real.resolve()
        if not inside(tree, real):
            raise RenderError(f"symlink {display(tree, logical)!r} points outside the repository checkout")
    return real


def _scan(tree: Path, real_dir: Path, logical_dir: Path, rel: PurePosixPath,
          seen: frozenset[Path], options: Directory, out: Layout) -> None:
    with os.scandir(real_dir) as entries:
        children = sorted(entries, key=lambda e: e.name)
    for entry in children:
        if entry.name.startswith("."):        # .git, .github: never manifests
            continue
        name, logical = (rel / entry.name).as_posix(), logical_dir / entry.name
        real = _real(tree, entry, logical)
        if options.exclude and matches(name, options.exclude):
            continue
        if real.is_dir() and real not in seen:            # a symlink loop is cut
            _directory(tree, real, logical, PurePosixPath(name), seen | {real}, options, out)
        elif real.is_file():
            refuse_unsupported(tree, logical)
            if included(name, options):
                out.files.append((display(tree, logical), real))


def _directory(tree: Path, real: Path, logical: Path, rel: PurePosixPath, seen: frozenset[Path],
               options: Directory, out: Layout) -> None:
    if kustomization_file(real) is not None:
        refuse_nested(tree, real)
        out.kustomizations.append((display(tree, logical), real))
    elif options.recurse:
        refuse_chart(tree, logical)
        _scan(tree, real, logical, rel, seen, options, out)
