"""SOPS-encrypted manifests in Git, decrypted at render time with the real ``sops``.

Teams keep Secrets in Git encrypted with SOPS for age recipients; the workers
that render hold the age identity (``FLEETSYNC_SOPS_AGE_KEY_FILE``) and decrypt
just before the render reads the file. Only SOPS files are touched: a YAML or
JSON document whose top level holds ``sops:`` metadata with a ``mac`` and
``age`` or ``lastmodified``. Everything else is passed through unchanged.

Where the plaintext lives, and for how long:

* plain directories: ``decrypt_doc`` pipes the file's text to ``sops decrypt``
  and keeps the result in memory;
* kustomizations: kustomize reads files itself, so ``decrypted_tree`` makes a
  private copy of what kustomize reads of the checkout (the directories
  ``kustomize.survey`` reached, and the files named), writes the decrypted files
  into it (``0600``), and removes it when the build ends, however it ends. The
  copy lives on a tmpfs only, never on persistent disk: below
  ``Sops.scratch`` (``FLEETSYNC_SOPS_TMPFS``, default ``/dev/shm``), in a
  ``fleetsync-<uid>`` directory of the worker's own (``0700``, refused when
  another user owns it or may enter it), which must be on a ``tmpfs`` or
  ``ramfs`` mount (``/proc/self/mounts``); otherwise the render fails before
  anything is decrypted. Files are copied (a tmpfs is another file system than
  the checkout's), so the copy costs memory for its size while it lives. A copy
  left by a worker killed meanwhile is removed, once 15 minutes old, by the next
  decryption on that host (its name carries the dead process's id); a tmpfs
  does not outlive a reboot. The shared, read-only checkout never holds plaintext.

How sops runs: ``$FLEETSYNC_SOPS_BIN``, else ``sops`` on ``PATH``, else the
pinned sops ``fleetsync dev build`` built into its cache (``shared.toolcache``); with
an environment of only ``SOPS_AGE_KEY_FILE``, a ``HOME`` that is an empty temp
dir (so no ``~/.ssh`` key or ``~/.config/sops`` file is picked up), and age
tried first; no Redis URL, Git token or cloud credential reaches it; a timeout.
MACs are verified (no ``--ignore-mac``).

Which key services sops may call is the operator's decision, not the file's:
sops tries every master key a file's metadata names (top level and
``key_groups``) until one opens the data key, and an ``hc_vault`` entry carries
the address to call, a ``kms`` one the worker's ambient cloud identity. So
before sops runs, ``check_key_types`` refuses a file that names a key type
outside ``Sops.key_types`` (``FLEETSYNC_SOPS_KEY_TYPES``, ``age`` alone by
default), naming the file and the types; sops then sees only files whose every
key is one the operator allowed, and it tries them in that order.

Errors name the file (relative to the checkout) and sops's reason, never a
value: ``cannot decrypt apps/db/secret.yaml: no matching age identity (...)``.
They are ``DecryptionFailed``, a ``RenderError``: the unit is ``Failed`` and
nothing is applied. A timeout is a ``TransientError``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from shared.errors import RenderError, TransientError
from shared.logs import get_logger
from shared import toolcache
from shared.settings import Settings, from_env
from shared.yamlsafe import load_documents
from workers.render.tree import MAX_FILE_BYTES, RawDoc, display, read_text

DEFAULT_TIMEOUT = 30.0
NO_IDENTITY = "no matching age identity"
TYPES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
KEY_TYPES = ("age", "pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms")
DEFAULT_KEY_TYPES = ("age",)
DEFAULT_SCRATCH = "/dev/shm"
MEMORY_FILE_SYSTEMS = ("tmpfs", "ramfs")
TEMP_PREFIX = "fleetsync-sops-"
MAX_REASON = 600
SWEEP_AFTER = 900.0     # no render outlives a task's default hard time limit
_MARKER = {"yaml": re.compile(r"^sops:", re.M), "json": re.compile(r'"sops"\s*:')}

log = get_logger("fleetsync.sops")


class DecryptionFailed(RenderError):
    """A SOPS file this worker cannot decrypt: no key, wrong key, no sops, a bad MAC."""

    reason = "DecryptionFailed"


@dataclass(frozen=True)
class Sops:
    """How this worker decrypts: its age key file, the sops binary, a timeout.

    ``binary`` None: ``sops`` on ``PATH`` at the time of the decryption, else ``cached``.
    """

    age_key_file: str | None = None
    binary: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    key_types: tuple[str, ...] = DEFAULT_KEY_TYPES    # what a file's metadata may name
    scratch: str = DEFAULT_SCRATCH                     # a tmpfs: kustomize's decrypted copies
    cached: str | None = None      # the sops `fleetsync dev build` built: tried after PATH

    @classmethod
    def from_settings(cls, settings: Settings) -> "Sops":
        cached = toolcache.sops_path(settings.tools_dir) if settings.tools_dir else None
        return cls(settings.sops_age_key_file, settings.sops_bin,
                   key_types=settings.sops_key_types,
                   scratch=settings.sops_tmpfs or DEFAULT_SCRATCH,
                   cached=str(cached) if cached else None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Sops":
        """The worker's: ``FLEETSYNC_SOPS_AGE_KEY_FILE`` and ``FLEETSYNC_SOPS_BIN``."""
        return cls.from_settings(from_env(env))


# --- recognising SOPS files ----------------------------------------------------------

def file_type(where: str) -> str | None:
    """``yaml`` or ``json`` by the file's suffix; None for anything sops is not used on here."""
    return TYPES.get(os.path.splitext(where.split(" ", 1)[0])[1].lower())


def metadata(text: str, where: str) -> list[dict[str, Any]]:
    """The ``sops`` metadata of each document of a SOPS file; empty for any other file."""
    kind = file_type(where)
    if kind is None or not _MARKER[kind].search(text):
        return []
    try:
        docs = load_documents(text, where)
    except RenderError:
        return []             # not valid YAML: the render reports it where it loads the file
    found = [doc.get("sops") for _, doc in docs if isinstance(doc, dict)]
    return [meta for meta in found if isinstance(meta, dict) and "mac" in meta
            and ("age" in meta or "lastmodified" in meta)]


def is_encrypted_file(path: Path, where: str) -> bool:
    if file_type(where) is None or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
        return False
    return bool(metadata(read_text(path, where), where))


def key_types(meta: list[dict[str, Any]]) -> set[str]:
    """Every key type the metadata names with at least one key, at the top level or in a
    ``key_groups`` entry (where every key of a group is a master key)."""
    found = {k for m in meta for k in KEY_TYPES if m.get(k)}
    for m in meta:
        groups = m.get("key_groups")
        for group in groups if isinstance(groups, list) else []:
            found |= {str(k) for k, v in group.items() if v} if isinstance(group, dict) else set()
    return found


def check_key_types(where: str, meta: list[dict[str, Any]], sops: "Sops") -> None:
    """Refuse a file naming a key service the operator did not allow: sops would call it."""
    refused = sorted(key_types(meta) - set(sops.key_types))
    if refused:
        raise DecryptionFailed(
            f"cannot decrypt {where}: its SOPS metadata names {', '.join(refused)} keys, and this "
            f"worker decrypts with {', '.join(sops.key_types)} only (FLEETSYNC_SOPS_KEY_TYPES); "
            "sops was not run: remove those keys (sops updatekeys with a .sops.yaml listing "
            "only the allowed ones), or allow the type on the workers")


def age_recipients(meta: list[dict[str, Any]]) -> list[str]:
    return sorted({entry["recipient"] for m in meta for entry in m.get("age") or []
                   if isinstance(entry, dict) and isinstance(entry.get("recipient"), str)})


# --- decrypting ------------------------------------------------------------------------

def decrypt_doc(doc: RawDoc, sops: Sops) -> RawDoc:
    """``doc`` with its text decrypted when it is a SOPS file; otherwise ``doc`` itself."""
    meta = metadata(doc.text, doc.source)
    return RawDoc(doc.source, decrypt(doc.text, doc.source, meta, sops)) if meta else doc


def decrypt(text: str, where: str, meta: list[dict[str, Any]], sops: Sops) -> str:
    """The plaintext of the SOPS file ``where`` (its ``text`` and ``metadata``)."""
    kind = file_type(where) or "yaml"
    recipients = age_recipients(meta)
    check_key_types(where, meta, sops)
    binary = _binary(sops, where)
    _check_key(sops, where, recipients, meta)
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX + "home-") as home:
        env = {"SOPS_AGE_KEY_FILE": os.path.abspath(str(sops.age_key_file)),   # sops runs in home
               "SOPS_DECRYPTION_ORDER": ",".join(sops.key_types),
               "HOME": home, "XDG_CONFIG_HOME": home}
        argv = [binary, "decrypt", "--input-type", kind, "--output-type", kind]
        started = time.monotonic()
        try:
            done = subprocess.run(argv, input=text, capture_output=True, text=True, env=env,
                                  cwd=home, timeout=sops.timeout)
        except subprocess.TimeoutExpired as exc:
            raise TransientError(f"cannot decrypt {where}: sops timed out after "
                                 f"{sops.timeout:g}s") from exc
        except OSError as exc:
            raise DecryptionFailed(f"cannot decrypt {where}: cannot run {binary}: "
                                   f"{exc.strerror}") from exc
    if done.returncode != 0:
        raise DecryptionFailed(f"cannot decrypt {where}: {_reason(done.stderr, recipients)}")
    log.info("decrypted a SOPS file", file=where, seconds=round(time.monotonic() - started, 3))
    return done.stdout


def _binary(sops: Sops, where: str) -> str:
    found = toolcache.find("sops", sops.binary, sops.cached)
    if not found:
        cache = f", nor at {sops.cached}" if sops.cached else ""
        raise DecryptionFailed(
            f"cannot decrypt {where}: sops is not installed on this worker (not on PATH{cache}; "
            "set FLEETSYNC_SOPS_BIN, or run `fleetsync dev build`, which builds it into that "
            "cache)")
    return os.path.abspath(found) if os.sep in found else found


def _check_key(sops: Sops, where: str, recipients: list[str], meta: list[dict[str, Any]]) -> None:
    if not recipients:
        kinds = sorted({k for m in meta for k in KEY_TYPES if m.get(k)})
        raise DecryptionFailed(
            f"cannot decrypt {where}: it has no age recipient (only {', '.join(kinds) or 'none'}); "
            "fleetsync decrypts with age identities only: add one with sops updatekeys")
    if not sops.age_key_file:
        raise DecryptionFailed(f"cannot decrypt {where}: {NO_IDENTITY} (FLEETSYNC_SOPS_AGE_KEY_FILE "
                               "is not set on this worker)")
    if not os.access(sops.age_key_file, os.R_OK):
        raise DecryptionFailed(f"cannot decrypt {where}: {NO_IDENTITY} (FLEETSYNC_SOPS_AGE_KEY_FILE="
                               f"{sops.age_key_file} cannot be read on this worker)")


def _reason(stderr: str, recipients: list[str]) -> str:
    """sops's reason in one line; a key that fits no recipient is said plainly."""
    if "did not match any of the recipients" in stderr or "no identity matched" in stderr:
        return (f"{NO_IDENTITY} (the worker's FLEETSYNC_SOPS_AGE_KEY_FILE holds no identity for "
                f"{', '.join(recipients)})")
    text = " ".join(line.strip(" |") for line in stderr.splitlines() if line.strip(" |"))
    text = text or "sops failed without a message"
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 1] + "…"


# --- a private, decrypted copy of a checkout (for kustomize) ---------------------------------

@contextlib.contextmanager
def decrypted_tree(tree: Path, files: Iterable[Path], sops: Sops,
                   directories: Iterable[Path] | None = None) -> Iterator[Path]:
    """``tree`` itself when none of ``files`` (resolved, inside ``tree``) is a SOPS file;
    else a private copy, on a tmpfs, of ``directories`` (None: all of ``tree``) and
    ``files`` with the SOPS files decrypted, removed on exit."""
    encrypted = [(path, display(tree, path)) for path in sorted(set(files))
                 if is_encrypted_file(path, display(tree, path))]
    if not encrypted:
        yield tree
        return
    for path, where in encrypted:       # before anything is copied or decrypted
        check_key_types(where, metadata(read_text(path, where), where), sops)
    owned = scratch_dir(sops, encrypted[0][1])
    sweep(owned)
    private = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=owned))
    try:
        copy = private / "tree"
        roots = [tree] if directories is None else [*directories, *sorted(set(files))]
        _mirror(tree, copy, roots)
        for path, where in encrypted:
            text = read_text(path, where)
            _write_private(copy / path.relative_to(tree), decrypt(text, where, metadata(text, where), sops))
        yield copy
    finally:
        shutil.rmtree(private, ignore_errors=True)


def scratch_dir(sops: Sops, where: str) -> Path:
    """The worker's own ``0700`` directory on the tmpfs ``sops.scratch``, made when missing."""
    base = Path(sops.scratch)
    fs = file_system(base)
    if fs not in MEMORY_FILE_SYSTEMS:
        raise DecryptionFailed(
            f"cannot decrypt {where} for kustomize: its decrypted copy is written to a tmpfs "
            f"only, and {base} is {'not there' if fs is None else f'a {fs} file system'} (set "
            "FLEETSYNC_SOPS_TMPFS to a tmpfs directory, e.g. an emptyDir with medium: Memory)")
    owned = base / f"fleetsync-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        owned.mkdir(mode=0o700)
    info = owned.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise DecryptionFailed(f"cannot decrypt {where} for kustomize: {owned} is not a "
                               "directory of this worker's user that only it may enter")
    return owned


def file_system(path: Path) -> str | None:
    """The type of the file system ``path`` is on (``/proc/self/mounts``), None if unknown."""
    try:
        real = os.path.realpath(path)
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    if not os.path.isdir(real):
        return None
    best, kind = "", None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        within = real == point or real.startswith(point.rstrip("/") + "/")
        if within and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def _mirror(src: Path, dest: Path, roots: Iterable[Path]) -> None:
    """``dest``: ``roots`` (directories and files of ``src``) at their places below it,
    with writable 0700 directories; files hard-linked when on the same file system,
    else copied."""
    dest.mkdir(mode=0o700)
    for root in sorted(set(roots)):
        here = dest / root.relative_to(src)
        for parent in reversed(here.relative_to(dest).parents[:-1]):
            (dest / parent).mkdir(mode=0o700, exist_ok=True)
        if root.is_dir() and not root.is_symlink():
            _mirror_directory(root, here)
        elif not here.exists():
            _place(root, here)


def _mirror_directory(src: Path, dest: Path) -> None:
    for top, dirs, files in os.walk(src):
        here = dest / Path(top).relative_to(src)
        here.mkdir(mode=0o700, exist_ok=True)
        for name in dirs + files:
            path = Path(top) / name
            if path.is_symlink() and not os.path.lexists(here / name):
                os.symlink(os.readlink(path), here / name)
            elif name in files and not os.path.lexists(here / name):
                _place(path, here / name)


def _place(path: Path, dest: Path) -> None:
    try:
        os.link(path, dest)
    except OSError:       # another file system, or links not allowed
        shutil.copyfile(path, dest)


def _write_private(path: Path, text: str) -> None:
    path.unlink()                 # a link to the checkout's file: never write through it
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def sweep(root: Path, older_than: float = SWEEP_AFTER) -> None:
    """Remove decrypted copies left by processes of this host that died before cleaning up.

    Only copies older than ``older_than`` seconds: a process id seen from another
    PID namespace sharing this tmpfs must not lose a copy in use."""
    for entry in root.glob(f"{TEMP_PREFIX}[0-9]*-*"):
        pid = entry.name[len(TEMP_PREFIX):].split("-", 1)[0]
        with contextlib.suppress(OSError):
            old = time.time() - entry.stat().st_mtime > older_than
            if old and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
