"""Which units' inputs a candidate leaves alone, from Git alone: those need no render at all.

A plain directory renders from the files below its path and nothing else
(``workers.render.tree`` never leaves it, ``workers.render.layout`` reads inside
it), so when no file below the path changed between the base and the candidate
its render is the same at both, for every cluster: the unit is ``unchanged``
without being rendered. That holds only where nothing can reach outside the
path: a kustomization (its resources may be ``../base``, or remote), a chart
(its dependencies), a symbolic link, or a path that is the whole repository.
Units below one of those are rendered at both revisions, and their renders
compared (``workers.run.preview_unit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from shared.errors import FleetsyncError
from shared.spec.model import Application, Cluster
from workers.render.engine import app_path
from workers.render.helm import CHART_FILE
from workers.render.kustomize import KUSTOMIZATION_FILES

_REACHING = frozenset((*KUSTOMIZATION_FILES, CHART_FILE))
_SYMLINK = "120000"
_SUBMODULE = "160000"


@dataclass(frozen=True)
class Changes:
    """What differs between the two revisions, and where a render may reach outside."""

    changed: tuple[str, ...]            # files whose content differs
    reaching: tuple[str, ...]           # directories whose render may read outside them

    @classmethod
    def of(cls, changed: Iterable[str], entries: Iterable[tuple[str, str]]) -> "Changes":
        reaching = set()
        for mode, path in entries:
            folder, _, name = path.rpartition("/")
            if mode in (_SYMLINK, _SUBMODULE):
                reaching.add(folder)
            elif name in _REACHING:
                reaching.add(folder)
        return cls(tuple(sorted(changed)), tuple(sorted(reaching)))

    def untouched(self, app: Application, cluster: Cluster) -> bool:
        """True when the unit's render is provably the same at both revisions."""
        if app.chart is not None or app.allow_remote_bases:
            return False
        try:
            path = _clean(app_path(app, cluster.variables()))
        except FleetsyncError:
            return False            # the render says why; not decided here
        if not path:
            return False            # the whole repository: anything may be an input
        if any(_inside(r, path) for r in self.reaching):
            return False
        return not any(_inside(f, path) for f in self.changed)


def _clean(path: str) -> str:
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    return "" if ".." in parts else "/".join(parts)


def _inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or below it."""
    return path == folder or path.startswith(folder + "/")
