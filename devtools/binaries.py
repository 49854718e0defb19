"""Find or build the Kubernetes binaries the local fleet runs.

A bare control plane needs etcd and kube-apiserver; a cluster with workloads
also runs kube-controller-manager, kube-scheduler and kwok (fake Nodes whose
Pods progress as its Stages say). Each binary comes from ``$FLEETSYNC_K8S_BIN``
when it is set (it must then hold every binary asked for), else from ``PATH``,
else from a cache outside the repository (``~/.cache/fleetsync/k8s/...``).

What is missing is built from the Go module proxy. ``k8s.io/kubernetes``
cannot be ``go install``-ed because of its own ``replace`` directives, so a tiny
wrapper module pins every ``k8s.io/*`` staging module to its published
``v0.N.P`` tag and ``go build`` writes the binaries into the cache; etcd is
built the same way. kwok has no such replaces: ``go install`` builds it.

``sops`` (SOPS-encrypted manifests, decrypted at render) and ``age-keygen``
(age identities for the tests and for operators trying SOPS locally) are
``go install``-ed the same way, from the pinned sops and the ``filippo.io/age``
version that sops itself requires. ``sops`` is taken from ``$FLEETSYNC_SOPS_BIN``
(the executable) when set, else ``PATH``, else the cache; ``age-keygen`` from
``PATH``, else the cache. Workers look in the same order, the cache last
(``shared/toolcache.py`` holds its path and the pinned helm and sops versions
for both sides: ``workers`` may not import ``devtools``).

``helm`` (chart applications, rendered with ``helm template``; kustomize's
``helmCharts:``) is ``go install``-ed from the pinned ``HELM_VERSION`` in the
same way, into ``~/.cache/fleetsync/k8s/helm-<version>/bin``; it is taken from
``$FLEETSYNC_HELM_BIN`` when set, else ``PATH``, else the cache, as workers
do (see ``workers/render/helm.py``).

The registry tools (``registry``, ``crane``, ``oras``) are a table in
``devtools.gotools``; the Go build steps all go through ``devtools.gobuild``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from devtools import gobuild
from devtools.gobuild import BinaryError, Progress, cache_root
from devtools.gotools import ensure_registry_tools
from shared import toolcache
from shared.toolcache import HELM_VERSION, SOPS_VERSION

KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.7.3"
KWOK_VERSION = "v0.8.0"
AGE_VERSION = "v1.3.1"      # the filippo.io/age that sops SOPS_VERSION requires

CONTROL_PLANE = ("kube-apiserver", "etcd")
SOPS_TOOLS = ("sops", "age-keygen")
WORKLOADS = ("kube-controller-manager", "kube-scheduler", "kwok")
KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path
    kube_controller_manager: Path | None = None
    kube_scheduler: Path | None = None
    kwok: Path | None = None

    def path(self, name: str) -> Path:
        found = getattr(self, name.replace("-", "_"))
        if found is None:
            raise BinaryError(f"{name} was not looked up (ask for workloads=True)")
        return found


def wanted(workloads: bool) -> tuple[str, ...]:
    return CONTROL_PLANE + (WORKLOADS if workloads else ())


def bin_dir(version: str = KUBERNETES_VERSION) -> Path:
    """Where etcd and the Kubernetes commands of ``version`` are cached."""
    return cache_root() / "k8s" / f"{version}-etcd{ETCD_VERSION}" / "bin"


def kwok_dir(version: str = KWOK_VERSION) -> Path:
    return cache_root() / "k8s" / f"kwok-{version}" / "bin"


def cached(name: str) -> Path:
    return (kwok_dir() if name == "kwok" else bin_dir()) / name


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _binaries(found: dict[str, Path]) -> Binaries:
    return Binaries(**{name.replace("-", "_"): path for name, path in found.items()})


def lookup(workloads: bool = False) -> tuple[dict[str, Path], list[str]]:
    """(found name -> path, missing names), without building.

    With ``$FLEETSYNC_K8S_BIN`` set, that directory alone is looked at."""
    env_dir = os.environ.get("FLEETSYNC_K8S_BIN")
    found: dict[str, Path] = {}
    for name in wanted(workloads):
        if env_dir:
            candidates = [Path(env_dir) / name]
        else:
            on_path = shutil.which(name)
            candidates = ([Path(on_path)] if on_path else []) + [cached(name)]
        path = next((c for c in candidates if _executable(c)), None)
        if path is not None:
            found[name] = path
    return found, [n for n in wanted(workloads) if n not in found]


def find_binaries(workloads: bool = False) -> Binaries | None:
    """The binaries to use, without building: env dir, then PATH, then cache.

    None when one is missing; a ``$FLEETSYNC_K8S_BIN`` lacking one is an error."""
    found, missing = lookup(workloads)
    if missing and os.environ.get("FLEETSYNC_K8S_BIN"):
        raise _env_dir_error(missing)
    return None if missing else _binaries(found)


def _env_dir_error(missing: list[str]) -> BinaryError:
    env_dir = os.environ.get("FLEETSYNC_K8S_BIN")
    return BinaryError(
        f"FLEETSYNC_K8S_BIN={env_dir} does not hold {' and '.join(missing)} (an executable "
        "file of that name); add it there, or unset FLEETSYNC_K8S_BIN to use PATH and the "
        "cache (`fleetsync dev build` builds what is missing)")


def ensure_binaries(progress: Progress = print, workloads: bool = True) -> Binaries:
    """Return usable binaries, building the missing ones into the cache."""
    found, missing = lookup(workloads)
    if not missing:
        return _binaries(found)
    if os.environ.get("FLEETSYNC_K8S_BIN"):
        raise _env_dir_error(missing)
    if shutil.which("go") is None:
        raise BinaryError(
            f"{', '.join(missing)} not found (FLEETSYNC_K8S_BIN, PATH, {cache_root() / 'k8s'}) "
            "and Go is not installed to build them: install Go >= 1.26 "
            "(https://go.dev/doc/install) or put the binaries on PATH")
    progress(f"Missing: {', '.join(missing)}; building into {cache_root() / 'k8s'}")
    if "etcd" in missing:
        build_etcd(cached("etcd"), progress)
    commands = [n for n in KUBERNETES_COMMANDS if n in missing]
    if commands:
        build_kubernetes(commands, bin_dir(), progress)
    if "kwok" in missing:
        build_kwok(cached("kwok"), progress)
    for name in missing:
        found[name] = cached(name)
    return _binaries(found)


# --- building ----------------------------------------------------------------

def staging_modules(version: str = KUBERNETES_VERSION) -> list[str]:
    """The k8s.io staging modules that k8s.io/kubernetes replaces with ./staging."""
    gomod = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        check=True, capture_output=True, text=True, env=gobuild.go_env(),
    ).stdout
    mod_path = re.search(r'"GoMod":\s*"([^"]+)"', gomod)
    if not mod_path:
        raise BinaryError(f"cannot locate go.mod of k8s.io/kubernetes@{version}")
    text = Path(mod_path.group(1)).read_text()
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", text, re.M)))


def build_kubernetes(commands: list[str], out: Path, progress: Progress = print,
                     version: str = KUBERNETES_VERSION) -> None:
    """Build ``commands`` (kube-apiserver, kube-controller-manager, kube-scheduler)
    of ``k8s.io/kubernetes@version`` into ``out``, from one wrapper module."""
    progress(f"Building {', '.join(commands)} {version} from the Go module proxy (a cold "
             "build takes 5-25 minutes per command on 2 cores; it is cached afterwards)")
    minor = version.lstrip("v").split(".")
    staging_version = f"v0.{minor[1]}.{minor[2]}"
    replaces = "\n".join(f"\t{m} => {m} {staging_version}" for m in staging_modules(version))
    wrapper = gobuild.wrapper(f"kubernetes-{version}", (
        "module fleetsync.local/k8sbuild\n\ngo 1.26\n\n"
        f"require k8s.io/kubernetes {version}\n\nreplace (\n{replaces}\n)\n"
    ))
    gobuild.run(["go", "get", *(f"k8s.io/kubernetes/cmd/{c}@{version}" for c in KUBERNETES_COMMANDS)],
         wrapper, progress, ", ".join(commands))
    ldflags = " ".join([
        "-s", "-w",
        f"-X k8s.io/component-base/version.gitVersion={version}",
        f"-X k8s.io/component-base/version.gitMajor={minor[0]}",
        f"-X k8s.io/component-base/version.gitMinor={minor[1]}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
    ])
    for command in commands:
        progress(f"Building {command} {version}")

        def build(tmp: Path, command: str = command) -> None:
            gobuild.with_heartbeat(lambda: gobuild.run(
                ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp),
                 f"k8s.io/kubernetes/cmd/{command}"], wrapper, progress, command),
                progress, command)

        gobuild.build_into(out / command, build)


def build_kube_apiserver(dest: Path, progress: Progress = print,
                         version: str = KUBERNETES_VERSION) -> None:
    build_kubernetes(["kube-apiserver"], dest.parent, progress, version)


def build_etcd(dest: Path, progress: Progress = print, version: str = ETCD_VERSION) -> None:
    progress(f"Building etcd {version} from the Go module proxy")
    wrapper = gobuild.wrapper(f"etcd-{version}", (
        "module fleetsync.local/etcdbuild\n\ngo 1.26\n\n"
        f"require go.etcd.io/etcd/server/v3 {version}\n"
    ))
    gobuild.run(["go", "get", f"go.etcd.io/etcd/server/v3@{version}"], wrapper, progress, "etcd")
    gobuild.build_into(dest, lambda tmp: gobuild.with_heartbeat(lambda: gobuild.run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp),
         "go.etcd.io/etcd/server/v3"], wrapper, progress, "etcd"),
        progress, "etcd"))


def build_kwok(dest: Path, progress: Progress = print, version: str = KWOK_VERSION) -> None:
    """``go install sigs.k8s.io/kwok/cmd/kwok@version`` into a scratch GOBIN, then ``dest``."""
    progress(f"Building kwok {version} from the Go module proxy (about 3 minutes on 2 cores)")
    gobuild.go_install("kwok", f"sigs.k8s.io/kwok/cmd/kwok@{version}", dest, progress)


# --- sops and age-keygen ---------------------------------------------------------

def sops_dir(version: str = SOPS_VERSION) -> Path:
    """Where sops ``version`` and the age-keygen it goes with are cached."""
    return toolcache.sops_path(toolcache.tools_dir(os.environ), version).parent


def lookup_sops() -> tuple[dict[str, Path], list[str]]:
    """(found name -> path, missing names) of ``SOPS_TOOLS``, without building.

    ``$FLEETSYNC_SOPS_BIN``, when set, is the sops to use and must be executable."""
    found: dict[str, Path] = {}
    given = os.environ.get("FLEETSYNC_SOPS_BIN")
    if given:
        if not _executable(Path(given)):
            raise BinaryError(f"FLEETSYNC_SOPS_BIN={given} is not an executable file; point it "
                              "at sops, or unset it to use PATH and the cache (`fleetsync dev "
                              "build` builds sops when it is missing)")
        found["sops"] = Path(given)
    for name in SOPS_TOOLS:
        on_path = shutil.which(name)
        candidates = ([Path(on_path)] if on_path else []) + [sops_dir() / name]
        path = found.get(name) or next((c for c in candidates if _executable(c)), None)
        if path is not None:
            found[name] = path
    return found, [n for n in SOPS_TOOLS if n not in found]


def find_sops() -> dict[str, Path] | None:
    """sops and age-keygen without building, or None when one is missing."""
    found, missing = lookup_sops()
    return None if missing else found


def ensure_sops(progress: Progress = print) -> dict[str, Path]:
    """sops and age-keygen, building the missing ones into the cache."""
    found, missing = lookup_sops()
    if not missing:
        return found
    if shutil.which("go") is None:
        raise BinaryError(
            f"{' and '.join(missing)} not found (PATH, {sops_dir()}) and Go is not installed to "
            "build them: install Go >= 1.26 (https://go.dev/doc/install) or put them on PATH")
    progress(f"Missing: {', '.join(missing)}; building into {sops_dir()}")
    if "sops" in missing:
        progress(f"Building sops {SOPS_VERSION} from the Go module proxy (about 2 minutes "
                 "on 2 cores)")
        gobuild.go_install("sops", f"github.com/getsops/sops/v3/cmd/sops@{SOPS_VERSION}",
                    sops_dir() / "sops", progress)
    if "age-keygen" in missing:
        progress(f"Building age-keygen {AGE_VERSION} from the Go module proxy")
        gobuild.go_install("age-keygen", f"filippo.io/age/cmd/age-keygen@{AGE_VERSION}",
                    sops_dir() / "age-keygen", progress)
    return {**found, **{name: sops_dir() / name for name in missing}}


# --- helm ------------------------------------------------------------------------------

def helm_dir(version: str = HELM_VERSION) -> Path:
    """Where helm ``version`` is cached."""
    return toolcache.helm_path(toolcache.tools_dir(os.environ), version).parent


def find_helm() -> Path | None:
    """helm without building: ``$FLEETSYNC_HELM_BIN``, then ``PATH``, then the cache."""
    given = os.environ.get("FLEETSYNC_HELM_BIN")
    if given:
        if not _executable(Path(given)):
            raise BinaryError(f"FLEETSYNC_HELM_BIN={given} is not an executable file; point it "
                              "at helm, or unset it to use PATH and the cache (`fleetsync dev "
                              "build` builds helm when it is missing)")
        return Path(given)
    on_path = shutil.which("helm")
    candidates = ([Path(on_path)] if on_path else []) + [helm_dir() / "helm"]
    return next((c for c in candidates if _executable(c)), None)


def ensure_helm(progress: Progress = print) -> dict[str, Path]:
    """helm, built into the cache when it is missing."""
    found = find_helm()
    if found is not None:
        return {"helm": found}
    if shutil.which("go") is None:
        raise BinaryError(
            f"helm not found (FLEETSYNC_HELM_BIN, PATH, {helm_dir()}) and Go is not installed to "
            "build it: install Go >= 1.26 (https://go.dev/doc/install) or put helm on PATH")
    progress(f"Missing: helm; building helm {HELM_VERSION} into {helm_dir()} from the Go module "
             "proxy (about 3 minutes on 2 cores)")
    gobuild.go_install("helm", f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}", helm_dir() / "helm", progress)
    return {"helm": helm_dir() / "helm"}


def describe(found: Binaries) -> str:
    return "\n".join(f"{name}: {found.path(name)}" for name in CONTROL_PLANE + WORKLOADS
                     if getattr(found, name.replace("-", "_")) is not None)


def describe_tools(found: dict[str, Path]) -> str:
    return "\n".join(f"{name}: {path}" for name, path in found.items())


def main() -> int:
    try:
        found = ensure_binaries(lambda msg: print(msg, flush=True))
        tools = ensure_sops(lambda msg: print(msg, flush=True))
        tools.update(ensure_helm(lambda msg: print(msg, flush=True)))
        tools.update(ensure_registry_tools(lambda msg: print(msg, flush=True)))
    except BinaryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(describe(found))
    print(describe_tools(tools))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
