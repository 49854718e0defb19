"""How ``fleetsync dev build`` runs the Go toolchain: one place for every Go-built binary.

``run`` streams a build's output as progress (module downloads muted), keeps its
last lines for the error; ``with_heartbeat`` prints a line every 30s while a long,
quiet ``go build`` runs; ``build_into`` writes to ``NAME.partial`` and renames,
so an interrupted build leaves no half binary behind; ``go_install`` is
``go install path@version`` into a scratch ``GOBIN``, then the cache.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from shared import toolcache

Progress = Callable[[str], None]


class BinaryError(RuntimeError):
    """A binary is missing and cannot be built; the message says what to do."""


def cache_root() -> Path:
    return toolcache.cache_root(os.environ)


def go_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOFLAGS="-mod=mod", CGO_ENABLED="0", GOTOOLCHAIN="local", GOWORK="off", **extra)
    return env


def run(cmd: list[str], cwd: Path, progress: Progress, what: str,
        env: dict[str, str] | None = None) -> None:
    progress(f"  $ {' '.join(cmd)}")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env or go_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
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


def wrapper(name: str, go_mod: str) -> Path:
    wrapper = cache_root() / "build" / name
    wrapper.mkdir(parents=True, exist_ok=True)
    (wrapper / "go.mod").write_text(go_mod)
    return wrapper


def with_heartbeat(fn: Callable[[], None], progress: Progress, what: str) -> None:
    """Print a line every 30s while a long, quiet `go build` runs."""
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


def build_into(dest: Path, build: Callable[[Path], None]) -> None:
    """Build to ``dest.partial`` and rename: an interrupted build leaves no half binary."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    build(tmp)
    tmp.rename(dest)


def go_install(name: str, package: str, dest: Path, progress: Progress) -> None:
    """``go install package`` (``path@version``) into a scratch GOBIN, then ``dest``."""
    gobin = cache_root() / "build" / package.rpartition("/")[2].replace("@", "-")
    gobin.mkdir(parents=True, exist_ok=True)
    env = go_env(GOBIN=str(gobin))
    env.pop("GOFLAGS")    # `go install pkg@version` builds outside any module

    def build(tmp: Path) -> None:
        with_heartbeat(lambda: run(
            ["go", "install", "-trimpath", "-ldflags", "-s -w", package], gobin, progress, name, env),
            progress, name)
        (gobin / name).rename(tmp)

    build_into(dest, build)
