"""What the fetch stage keeps on this host's disk, and the rules for sharing it.

``workers.fetch.gitsource`` decides what to fetch and check out; this module
holds the file-system side it stands on, which never runs git:

- ``locked``: the fcntl lock under which one process of the host fetches a
  mirror or extracts a tree while the others wait (``TransientError`` when it
  stays busy);
- ``make_read_only``: a fresh checkout loses its write bits before it is
  renamed into ``root/trees/<sha>``, so a render cannot change it;
- ``touch`` marks a tree as used, and ``collect_trees`` removes the least
  recently used beyond ``TREES_KEPT``, never one used within ``TREE_IN_USE``
  (renamed out of sight first, so a reader sees a tree whole or not at all);
- ``disk_usage`` and ``check_size``: a mirror that grew past its source's
  ``maxSize`` fails the fetch with ``SourceError``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from shared.errors import SourceError, TransientError
from shared.spec.model import Source

TREES_KEPT = 20          # checkouts kept per host, besides those in use
TREE_IN_USE = 900.0      # seconds since its last use during which a checkout is never removed (a task's limit)


@contextmanager
def locked(path: Path, wait: float, source: Source) -> Iterator[None]:
    """An exclusive flock on ``path``; TransientError if it stays busy for ``wait`` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        deadline = time.monotonic() + wait
        pause = 0.01
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TransientError(f"source {source.name}: mirror busy for {wait:g}s "
                                         "(another fetch holds its lock)") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def make_read_only(top: Path) -> None:
    """Drop every write bit, deepest first; symlinks are left alone (they have no mode)."""
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode):
                os.chmod(path, stat.S_IMODE(mode) & ~0o222)
    os.chmod(top, stat.S_IMODE(os.stat(top).st_mode) & ~0o222 | 0o555)


def disk_usage(top: Path) -> int:
    """Bytes the files below ``top`` take (what ``du`` counts, roughly)."""
    total = 0
    for dirpath, _, files in os.walk(top):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def check_size(source: Source, mirror: Path) -> None:
    """``SourceError`` when the source's mirror grew past its ``maxSize``."""
    if not source.max_size:
        return
    used = disk_usage(mirror)
    if used > source.max_size:
        raise SourceError(f"source {source.name}: its mirror takes {used / 2**20:.1f} MiB on "
                          f"this host, more than maxSize {source.max_size / 2**20:.1f} MiB: "
                          "raise maxSize, or shrink the repository (history, large files)")


def touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def collect_trees(trees: Path, kept: int, keep: Path | None = None,
                  in_use: float = TREE_IN_USE) -> list[Path]:
    """Remove all but the ``kept`` most recently used checkouts of this host, never one
    used (checked out or asked for) in the last ``in_use`` seconds: a render may be reading
    it. The removed ones, oldest first."""
    try:
        entries = [p for p in trees.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    used = sorted(entries, key=lambda p: p.stat().st_mtime, reverse=True)
    now, removed = time.time(), []
    for old in reversed(used[kept:]):
        if old == keep or now - old.stat().st_mtime < in_use:
            continue
        gone = old.with_name(f".gc-{old.name}-{os.getpid()}")
        try:
            old.rename(gone)             # out of sight at once: a reader gets it whole or not
        except OSError:
            continue
        remove_tree(gone)
        removed.append(old)
    return removed


def remove_tree(top: Path) -> None:
    """Remove a (possibly read-only) tree of our own making."""
    if not top.exists():
        return
    for dirpath, dirnames, _ in os.walk(top):
        os.chmod(dirpath, 0o700)
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)
    shutil.rmtree(top, ignore_errors=True)
