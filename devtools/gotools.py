"""The registry tools ``fleetsync dev build`` builds: an OCI registry and two push clients.

One row per tool: its name, the Go package ``go install`` builds, the pinned
version. Each is cached in ``~/.cache/fleetsync/k8s/<name>-<version>/bin/<name>``
and taken from ``$FLEETSYNC_<NAME>_BIN`` when set, else ``PATH``, else the cache,
as helm and sops are.

- ``registry``: go-containerregistry's in-memory registry (``-port``; the
  distribution API, nothing else). It has no TLS and no authentication:
  ``devtools.registryproxy`` puts both in front of it on loopback. It builds in
  under two minutes from a cold module cache, where CNCF distribution's
  ``registry`` pulls a storage driver tree for every cloud.
- ``crane``: the same module's client (push images, copy, list tags, digest).
- ``oras``: the ORAS CLI, which pushes OCI artifacts (a tar.gz of manifests).
- ``cosign`` (test-only, ``fleetsync dev build --cosign``, which ``make test`` runs
  and ``make demo`` does not): the sigstore CLI, keyed and offline, signs the
  artifacts of the signature tests as users sign theirs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from devtools import gobuild
from devtools.gobuild import BinaryError, Progress, cache_root

GGCR_VERSION = "v0.22.1"
ORAS_VERSION = "v1.3.6"


@dataclass(frozen=True)
class GoTool:
    name: str
    package: str       # what `go install` builds, without @version
    version: str
    minutes: int       # a cold build on 2 cores, for the progress line

    def cached(self) -> Path:
        return cache_root() / "k8s" / f"{self.name}-{self.version}" / "bin" / self.name

    @property
    def env_var(self) -> str:
        return f"FLEETSYNC_{self.name.upper()}_BIN"


REGISTRY_TOOLS = (
    GoTool("registry", "github.com/google/go-containerregistry/cmd/registry", GGCR_VERSION, 2),
    GoTool("crane", "github.com/google/go-containerregistry/cmd/crane", GGCR_VERSION, 1),
    GoTool("oras", "oras.land/oras/cmd/oras", ORAS_VERSION, 2),
)
COSIGN_VERSION = "v2.6.5"
TEST_TOOLS = (GoTool("cosign", "github.com/sigstore/cosign/v2/cmd/cosign", COSIGN_VERSION, 8),)
BY_NAME = {tool.name: tool for tool in REGISTRY_TOOLS + TEST_TOOLS}


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_tool(name: str) -> Path | None:
    """``name`` without building: ``$FLEETSYNC_<NAME>_BIN``, then ``PATH``, then the cache."""
    tool = BY_NAME[name]
    given = os.environ.get(tool.env_var)
    if given:
        if not _executable(Path(given)):
            raise BinaryError(f"{tool.env_var}={given} is not an executable file; point it at "
                              f"{name}, or unset it to use PATH and the cache (`fleetsync dev "
                              f"build` builds {name} when it is missing)")
        return Path(given)
    on_path = shutil.which(name)
    candidates = ([Path(on_path)] if on_path else []) + [tool.cached()]
    return next((c for c in candidates if _executable(c)), None)


def find_registry_tools() -> dict[str, Path] | None:
    """registry, crane and oras without building, or None when one is missing."""
    found = {tool.name: find_tool(tool.name) for tool in REGISTRY_TOOLS}
    if any(path is None for path in found.values()):
        return None
    return {name: path for name, path in found.items() if path is not None}


def ensure_registry_tools(progress: Progress = print) -> dict[str, Path]:
    """registry, crane and oras, the missing ones built into the cache."""
    return ensure_tools(REGISTRY_TOOLS, progress)


def ensure_tools(tools: tuple[GoTool, ...], progress: Progress = print) -> dict[str, Path]:
    """``tools``, the missing ones built into the cache."""
    found: dict[str, Path] = {}
    missing: list[GoTool] = []
    for tool in tools:
        path = find_tool(tool.name)
        if path is None:
            missing.append(tool)
        else:
            found[tool.name] = path
    if not missing:
        return found
    names = ", ".join(tool.name for tool in missing)
    if shutil.which("go") is None:
        raise BinaryError(
            f"{names} not found (PATH, {cache_root() / 'k8s'}) and Go is not installed to build "
            "them: install Go >= 1.26 (https://go.dev/doc/install) or put them on PATH")
    progress(f"Missing: {names}; building into {cache_root() / 'k8s'}")
    for tool in missing:
        progress(f"Building {tool.name} {tool.version} from the Go module proxy (about "
                 f"{tool.minutes} minute{'s' if tool.minutes > 1 else ''} on 2 cores)")
        gobuild.go_install(tool.name, f"{tool.package}@{tool.version}", tool.cached(), progress)
        found[tool.name] = tool.cached()
    return found
