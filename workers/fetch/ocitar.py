"""Extracting an OCI artifact's layer (a tar, gzipped or not) into a tree, with the guards
of a Git checkout.

A layer comes from a registry, which is untrusted input as a Git repository is:
``../`` and absolute names, symlinks pointing at ``/etc``, hard links, device
files, a small gzip that inflates to gigabytes and layers far larger than their
manifest says all occur. ``extract_layer`` reads the blob as a stream once:

    counted (at most ``declared`` bytes, sha256 checked at the end)
    -> tarfile stream ("r|*": no seeking, nothing buffered whole)
    -> each member vetted (name, type, size, count, running total)
    -> written below a fresh temporary directory, never through a symlink

and only a layer whose bytes match its digest and whose every member passed is
kept: the caller renames the directory into place, so a reader sees a whole tree
or none (``workers.fetch.ociartifact``). Its size is checked against the cap
from the manifest before a byte is downloaded (``check_declared``), and again
while streaming, since a registry may send more than it declared.

Symlinks are kept when they point inside the tree (relative, without leaving
it), as a Git checkout keeps them; the render stage refuses any that leaves it
as it does for Git trees (``workers.render.tree``). Hard links, devices, FIFOs
and sockets are refused. Every refusal is a ``SourceError`` naming the member.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from shared.errors import SourceError

CHUNK = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """What one layer may be: ``layer_bytes`` as downloaded, ``tree_bytes`` once
    extracted (the sum of its files), ``files`` members in all."""

    layer_bytes: int = 64 * 1024 * 1024
    tree_bytes: int = 256 * 1024 * 1024
    files: int = 10_000


def check_declared(where: str, declared: int, limits: Limits) -> None:
    """Refuse a layer whose manifest declares more bytes than the cap, before reading it."""
    if declared > limits.layer_bytes:
        raise SourceError(f"{where}: the layer is {declared} bytes, larger than the "
                          f"{limits.layer_bytes} byte limit (raise the source's maxSize to "
                          "allow it); not downloaded")


class _Counted:
    """A read-only stream that refuses to yield more than ``cap`` bytes and hashes them."""

    def __init__(self, raw: IO[bytes], cap: int, where: str) -> None:
        self._raw, self._cap, self._where = raw, cap, where
        self.count = 0
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        want = CHUNK if size is None or size < 0 else size
        data = self._raw.read(min(want, self._cap + 1 - self.count))
        self.count += len(data)
        if self.count > self._cap:
            raise SourceError(f"{self._where}: the registry sent more than the {self._cap} "
                              "bytes the manifest declares; refused")
        self.sha256.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def extract_layer(raw: IO[bytes], dest: Path, *, digest: str, declared: int, limits: Limits,
                  where: str) -> int:
    """Extract the layer streamed by ``raw`` into the empty directory ``dest``; the number
    of files written. ``digest`` (``sha256:...``) and ``declared`` are the manifest's."""
    check_declared(where, declared, limits)
    counted = _Counted(raw, declared, where)
    files = total = 0
    try:
        with tarfile.open(fileobj=counted, mode="r|*") as tar:  # type: ignore[call-overload]
            for member in tar:
                files += 1
                if files > limits.files:
                    raise SourceError(f"{where}: the layer holds more than {limits.files} files")
                total += max(member.size, 0)
                if total > limits.tree_bytes:
                    raise SourceError(f"{where}: the layer's files add up to more than "
                                      f"{limits.tree_bytes} bytes")
                _write(tar, member, dest, where)
        counted.drain()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SourceError(f"{where}: the layer is not a readable tar archive ({exc})") from None
    found = "sha256:" + counted.sha256.hexdigest()
    if counted.count != declared or found != digest:
        raise SourceError(f"{where}: the layer's bytes do not match its manifest "
                          f"({counted.count} bytes, {found}; declared {declared} bytes, "
                          f"{digest}); refused")
    return files


def member_problem(name: str) -> str | None:
    """Why a member name may not be extracted, or None; the name is normalized first."""
    if not name or "\x00" in name:
        return "has an empty or invalid name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in posixpath.normpath(name).split("/") or ".." in name.split("/"):
        return "has a path that leaves the artifact (..)"
    return None


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, where: str) -> None:
    name = member.name
    problem = member_problem(name)
    if problem:
        raise SourceError(f"{where}: member {name!r} {problem}; refused")
    rel = posixpath.normpath(name)
    if rel == ".":
        return
    target = dest / rel
    _refuse_through_links(dest, rel, where, name)
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
    elif member.isreg():
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(member)
        assert source is not None
        with open(target, "xb") as out:
            while chunk := source.read(CHUNK):
                out.write(chunk)
        os.chmod(target, 0o644 | (0o111 if member.mode & 0o100 else 0))
    elif member.issym():
        _symlink(member, dest, rel, where)
    else:
        kind = "hard link" if member.islnk() else "device, FIFO or other special file"
        raise SourceError(f"{where}: member {name!r} is a {kind}; refused")


def _refuse_through_links(dest: Path, rel: str, where: str, name: str) -> None:
    """Refuse a member whose parent directories (or itself) already exist as a symlink:
    writing there would write wherever the link points."""
    path = dest
    for part in rel.split("/"):
        path = path / part
        if path.is_symlink():
            raise SourceError(f"{where}: member {name!r} would be written through the "
                              "symlink " f"{path.relative_to(dest).as_posix()!r}; refused")
        if path.exists() and not stat.S_ISDIR(os.lstat(path).st_mode) and path != dest / rel:
            raise SourceError(f"{where}: member {name!r} is below a file; refused")


def _symlink(member: tarfile.TarInfo, dest: Path, rel: str, where: str) -> None:
    link = member.linkname
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), link))
    if (not link or link.startswith("/") or resolved == ".." or resolved.startswith("../")
            or "\x00" in link):
        raise SourceError(f"{where}: member {member.name!r} is a symlink to {link!r}, "
                          "outside the artifact; refused")
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(link, target)
