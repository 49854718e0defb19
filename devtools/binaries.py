"""Find or build the Kubernetes control-plane binaries the local fleet runs.

kube-apiserver and etcd come from ``$FLEETSYNC_K8S_BIN``, then from ``PATH``,
then from a cache outside the repository (``~/.cache/fleetsync/k8s/<version>``).
When none has them, they are built from the Go module proxy: a tiny wrapper
module pins every ``k8s.io/*`` staging module to its published ``v0.N.P`` tag
(``k8s.io/kubernetes`` cannot be ``go install``-ed directly because of its own
``replace`` directives), and ``go build`` writes the binaries into the cache.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.7.3"


class BinaryError(RuntimeError):
    """A control-plane binary is missing and cannot be built."""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fleetsync"


def bin_dir(version: str = KUBERNETES_VERSION) -> Path:
    return cache_root() / "k8s" / f"{version}-etcd{ETCD_VERSION}" / "bin"


def find_binaries() -> Binaries | None:
    """The binaries to use, without building: env dir, then PATH, then cache."""
    env_dir = os.environ.get("FLEETSYNC_K8S_BIN")
    if env_dir:
        found = _pair(Path(env_dir) / "kube-apiserver", Path(env_dir) / "etcd")
        if found is None:
            raise BinaryError(
                f"FLEETSYNC_K8S_BIN={env_dir} does not hold both kube-apiserver and etcd; "
                "unset it to use the cache, or run `fleetsync dev build`"
            )
        return found
    on_path = (shutil.which("kube-apiserver"), shutil.which("etcd"))
    if on_path[0] and on_path[1]:
        return Binaries(Path(on_path[0]), Path(on_path[1]))
    return _pair(bin_dir() / "kube-apiserver", bin_dir() / "etcd")


def _pair(apiserver: Path, etcd: Path) -> Binaries | None:
    if os.access(apiserver, os.X_OK) and os.access(etcd, os.X_OK):
        return Binaries(apiserver, etcd)
    return None


def ensure_binaries(progress=print) -> Binaries:
    """Return usable binaries, building the missing ones into the cache."""
    found = find_binaries()
    if found is not None:
        return found
    if shutil.which("go") is None:
        raise BinaryError(
            "kube-apiserver and etcd were not found (FLEETSYNC_K8S_BIN, PATH, "
            f"{bin_dir()}) and Go is not installed to build them: install Go >= 1.26 "
            "(https://go.dev/doc/install) or put both binaries on PATH"
        )
    out = bin_dir()
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out / "etcd", os.X_OK):
        build_etcd(out / "etcd", progress)
    if not os.access(out / "kube-apiserver", os.X_OK):
        build_kube_apiserver(out / "kube-apiserver", progress)
    return Binaries(out / "kube-apiserver", out / "etcd")


def _go_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOFLAGS="-mod=mod", CGO_ENABLED="0", GOTOOLCHAIN="local", GOWORK="off")
    return env


def _run(cmd: list[str], cwd: Path, progress, what: str) -> None:
    progress(f"  $ {' '.join(cmd)}")
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=_go_env(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    last: list[str] = []
    for line in proc.stdout:
        last = (last + [line.rstrip()])[-40:]
        if line.startswith(("go: downloading", "go: finding")):
            continue
        progress(f"    {line.rstrip()}")
    if proc.wait() != 0:
        tail = "\n".join(last)
        raise BinaryError(f"building {what} failed ({' '.join(cmd)}):\n{tail}")
    progress(f"  done in {time.monotonic() - started:.0f}s")


def _wrapper(name: str, go_mod: str) -> Path:
    wrapper = cache_root() / "build" / name
    wrapper.mkdir(parents=True, exist_ok=True)
    (wrapper / "go.mod").write_text(go_mod)
    return wrapper


def _with_heartbeat(fn, progress, what: str) -> None:
    """Print a line every 30s while a long, quiet `go build` runs."""
    import threading

    stop = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not stop.wait(30):
            progress(f"  ... still building {what} ({time.monotonic() - started:.0f}s)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        stop.set()


def staging_modules(version: str = KUBERNETES_VERSION) -> list[str]:
    """The k8s.io staging modules that k8s.io/kubernetes replaces with ./staging."""
    gomod = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        check=True, capture_output=True, text=True, env=_go_env(Path.cwd()),
    ).stdout
    mod_path = re.search(r'"GoMod":\s*"([^"]+)"', gomod)
    if not mod_path:
        raise BinaryError(f"cannot locate go.mod of k8s.io/kubernetes@{version}")
    text = Path(mod_path.group(1)).read_text()
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", text, re.M)))


def build_kube_apiserver(dest: Path, progress=print, version: str = KUBERNETES_VERSION) -> None:
    progress(f"Building kube-apiserver {version} from the Go module proxy "
             "(a cold build takes 10-25 minutes on 2 cores; it is cached afterwards)")
    minor = version.lstrip("v").split(".")
    staging_version = f"v0.{minor[1]}.{minor[2]}"
    replaces = "\n".join(f"\t{m} => {m} {staging_version}" for m in staging_modules(version))
    wrapper = _wrapper(f"kube-apiserver-{version}", (
        "module fleetsync.local/k8sbuild\n\ngo 1.26\n\n"
        f"require k8s.io/kubernetes {version}\n\nreplace (\n{replaces}\n)\n"
    ))
    _run(["go", "get", f"k8s.io/kubernetes/cmd/kube-apiserver@{version}"], wrapper, progress,
         "kube-apiserver")
    ldflags = " ".join([
        "-s", "-w",
        f"-X k8s.io/component-base/version.gitVersion={version}",
        f"-X k8s.io/component-base/version.gitMajor={minor[0]}",
        f"-X k8s.io/component-base/version.gitMinor={minor[1]}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
    ])
    tmp = dest.with_suffix(".partial")
    _with_heartbeat(lambda: _run(
        ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp),
         "k8s.io/kubernetes/cmd/kube-apiserver"], wrapper, progress, "kube-apiserver"),
        progress, "kube-apiserver")
    tmp.rename(dest)


def build_etcd(dest: Path, progress=print, version: str = ETCD_VERSION) -> None:
    progress(f"Building etcd {version} from the Go module proxy")
    wrapper = _wrapper(f"etcd-{version}", (
        "module fleetsync.local/etcdbuild\n\ngo 1.26\n\n"
        f"require go.etcd.io/etcd/server/v3 {version}\n"
    ))
    _run(["go", "get", f"go.etcd.io/etcd/server/v3@{version}"], wrapper, progress, "etcd")
    tmp = dest.with_suffix(".partial")
    _with_heartbeat(lambda: _run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp),
         "go.etcd.io/etcd/server/v3"], wrapper, progress, "etcd"),
        progress, "etcd")
    tmp.rename(dest)


def main() -> int:
    try:
        found = ensure_binaries(lambda msg: print(msg, flush=True))
    except BinaryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"kube-apiserver: {found.kube_apiserver}\netcd: {found.etcd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
