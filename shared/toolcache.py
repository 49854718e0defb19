"""The helm and sops that ``fleetsync dev build`` builds, and where: one home for both sides.

``devtools.binaries`` builds the pinned versions below into this cache; workers
look there last, so a worker or ``fleetsync render`` started from a shell after
``make demo`` finds the same helm and sops as the dev tools do. The order is
the same on both sides: ``FLEETSYNC_HELM_BIN`` / ``FLEETSYNC_SOPS_BIN``, else
``PATH``, else this cache (``$XDG_CACHE_HOME/fleetsync/k8s``, by default
``~/.cache/fleetsync/k8s``). Workers read the location once, when settings are
built (``shared.settings.from_env`` -> ``Settings.tools_dir``); ``devtools``
stays out of their imports (an import-linter contract), so the path lives here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Mapping

SOPS_VERSION = "v3.13.3"
HELM_VERSION = "v3.22.0"


def cache_root(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/fleetsync`` (``~/.cache/fleetsync``): dev builds and their tools."""
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fleetsync"


def tools_dir(env: Mapping[str, str]) -> Path:
    """Where the built binaries live, one directory per tool and version."""
    return cache_root(env) / "k8s"


def helm_path(tools: Path, version: str = HELM_VERSION) -> Path:
    return tools / f"helm-{version}" / "bin" / "helm"


def sops_path(tools: Path, version: str = SOPS_VERSION) -> Path:
    return tools / f"sops-{version}" / "bin" / "sops"


def find(name: str, given: str | None, cached: str | None) -> str | None:
    """``given`` (the operator's choice, as is), else ``name`` on ``PATH``, else ``cached``
    when it is an executable file; None when there is none."""
    if given:
        return given
    on_path = shutil.which(name)
    if on_path:
        return on_path
    if cached and os.path.isfile(cached) and os.access(cached, os.X_OK):
        return cached
    return None
