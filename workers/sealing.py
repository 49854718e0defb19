"""What only workers can read, write or send: sealed render entries and signed internal tasks.

Redis sits between Git and every cluster, and others can reach it (Flower's API,
a pull cluster's credential, whoever reads a backup). So workers keep a key that
never goes there, ``FLEETSYNC_CACHE_KEY_FILE``, and use it twice:

- Render entries are sealed with AES-GCM (``cryptography``): a Secret in Git is
  never readable at rest in Redis, and an entry changed there no longer opens.
  The associated data binds an entry to its key (``seal(blob, aad)``), so an
  entry moved under another key does not open either.
- Internal tasks (render, apply, check_health) carry an HMAC-SHA256 of their
  name and arguments: a task sent by anyone else (through Flower's API, or with
  a broker credential) is refused before it does anything.

The key file holds one key per line, ``<id>:<base64 of 32 bytes>``; the first
is the one used to seal and sign, every one opens and verifies, so a key can be
rotated by putting the new one first and dropping the old one a TTL later.
Make one with ``echo "k2:$(openssl rand -base64 32)"``. Without the setting, a
key is made once in the cache directory (mode 0600): enough for the workers of
one host; workers on several hosts must be given the same file.

Two subkeys are derived from each key with HKDF, one per use, so a signature
never doubles as an encryption key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.errors import PermanentError

MAGIC = b"FS1"                  # version of the sealed format
SIGNATURE = "sig"               # the keyword argument that carries a task's signature
KEY_BYTES = 32


class KeyFileError(PermanentError):
    """The key file is missing, unreadable or malformed."""

    reason = "KeyFileInvalid"


class Tampered(Exception):
    """A sealed value that does not open with any key: changed, moved or foreign."""


@dataclass(frozen=True)
class _Key:
    kid: str
    seal: AESGCM
    mac: bytes


def _derive(secret: bytes, use: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"fleetsync " + use) \
        .derive(secret)


def parse_keys(text: str, where: str) -> list[tuple[str, bytes]]:
    """``(id, key)`` pairs from a key file's text; the first is current."""
    found: list[tuple[str, bytes]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kid, sep, encoded = line.partition(":")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except ValueError:
            key = b""
        if not sep or not kid or not kid.isascii() or len(key) != KEY_BYTES:
            raise KeyFileError(f"{where}:{number}: expected '<id>:<base64 of {KEY_BYTES} bytes>'")
        if "change-me" in kid.lower() or key == bytes(KEY_BYTES):
            raise KeyFileError(f"{where}:{number}: this is the example key from deploy/; make "
                               f"one: echo \"k1:$(openssl rand -base64 32)\"")
        found.append((kid, key))
    if not found:
        raise KeyFileError(f"{where}: no key in the file")
    return found


class Sealer:
    """The workers' key ring: seal and open render entries, sign and verify tasks."""

    def __init__(self, keys: Iterable[tuple[str, bytes]]) -> None:
        self._keys = [_Key(kid, AESGCM(_derive(key, b"render entries")),
                           _derive(key, b"task signatures")) for kid, key in keys]
        self._by_id = {k.kid: k for k in self._keys}

    @classmethod
    def from_file(cls, path: str | Path) -> "Sealer":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise KeyFileError(f"cannot read the render key file {path}: {exc.strerror}") from exc
        return cls(parse_keys(text, str(path)))

    @property
    def current(self) -> str:
        return self._keys[0].kid

    # -- render entries --------------------------------------------------------------
    def seal(self, plain: bytes, aad: bytes) -> bytes:
        key, nonce = self._keys[0], secrets.token_bytes(12)
        kid = key.kid.encode()
        return MAGIC + bytes([len(kid)]) + kid + nonce + key.seal.encrypt(nonce, plain, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 1:
            raise Tampered("not a sealed value")
        size = blob[len(MAGIC)]
        start = len(MAGIC) + 1
        kid = blob[start:start + size].decode(errors="replace")
        nonce, body = blob[start + size:start + size + 12], blob[start + size + 12:]
        key = self._by_id.get(kid)
        if key is None:
            raise Tampered(f"sealed with key {kid!r}, which this worker does not have")
        try:
            return key.seal.decrypt(nonce, body, aad)
        except InvalidTag as exc:
            raise Tampered("does not authenticate: changed, or moved from another key") from exc

    # -- internal tasks ---------------------------------------------------------------
    def sign(self, name: str, args: list[Any], kwargs: Mapping[str, Any]) -> str:
        key = self._keys[0]
        return f"{key.kid}:{self._mac(key, name, args, kwargs)}"

    def verify(self, name: str, args: list[Any], kwargs: Mapping[str, Any]) -> str:
        """"" when ``kwargs`` carries a valid signature of this call, else why not."""
        given = str(kwargs.get(SIGNATURE) or "")
        kid, _, mac = given.partition(":")
        if not given:
            return "unsigned: only workers send this task"
        key = self._by_id.get(kid)
        if key is None:
            return f"signed with key {kid!r}, which this worker does not have"
        if not hmac.compare_digest(mac, self._mac(key, name, args, kwargs)):
            return "signature does not verify: the task was changed or forged"
        return ""

    @staticmethod
    def _mac(key: _Key, name: str, args: list[Any], kwargs: Mapping[str, Any]) -> str:
        body = {k: v for k, v in kwargs.items() if k != SIGNATURE}
        payload = json.dumps([name, list(args), body], sort_keys=True, separators=(",", ":"),
                             default=str).encode()
        return hmac.new(key.mac, payload, hashlib.sha256).hexdigest()


_made = threading.Lock()


def default_key_file(cache_dir: Path) -> Path:
    """A key made once for this host, kept beside its Git mirrors (mode 0600)."""
    path = cache_dir / "keys" / "render.key"
    with _made:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            line = f"local:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}\n"
            tmp = path.with_name(f".render.key.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(line)
            try:
                os.link(tmp, path)         # first writer wins, fleet-wide on this host
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
    return path


def load(key_file: str | None, cache_dir: Path) -> Sealer:
    """The sealer of this worker: from the key file, else this host's own key."""
    return Sealer.from_file(key_file or default_key_file(cache_dir))
