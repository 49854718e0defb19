"""A real Git repository rendered as a worker renders it: commit, fetch, check out, render.

Tests of repository layouts write files into a work repository, commit, and get
the read-only checkout of that commit through ``SourceCache``, the same path a
worker takes, so what they render is what a worker would apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.spec.model import Application, Cluster, Source
from tests.support.gitutil import GitRepo
from workers.fetch.gitsource import SourceCache
from workers.render.engine import render


class Repo:
    """A work repository and the checkout of its latest commit."""

    def __init__(self, tmp: Path) -> None:
        self.git = GitRepo(tmp / "work")
        self.cache = SourceCache(tmp / "cache")

    def write(self, files: dict[str, str]) -> "Repo":
        for rel, text in files.items():
            self.git.write(rel, text)
        return self

    def remove(self, *paths: str) -> "Repo":
        for rel in paths:
            self.git.remove(rel)
        return self

    def tree(self, message: str = "layout") -> Path:
        """Commit what was written and return the checkout of that commit."""
        self.git.commit(message)
        source = Source("gitops", self.git.bare_url(), "branch", "main", 60.0)
        return self.cache.checkout(source, self.cache.fetch(source))

    def render(self, app: Application, cluster: str = "dev-1") -> list[dict[str, Any]]:
        """Commit, check out, and render ``app`` for ``cluster`` as a worker would."""
        return render(app, Cluster(cluster), self.tree())
