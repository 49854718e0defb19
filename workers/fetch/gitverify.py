"""Commit signatures: a source with ``verify`` accepts only revisions signed by a trusted key.

After a fetch resolves the source's ref, ``verify_revision`` asks git for the
signature status of that one commit (``git log -1 --format=%G?``, which runs
``ssh-keygen -Y verify`` or ``gpg --verify`` as ``git verify-commit`` does) and
refuses anything but ``G`` (good, and from a trusted key) with a permanent
``SourceError`` naming the commit and why. The fetch then fails before the new
revision is recorded anywhere, so the units keep the last verified one and
their status says why they do not move.

- ``verify: {ssh: {allowedSigners: FILE}}``: ``gpg.format=ssh`` and
  ``gpg.ssh.allowedSignersFile=FILE`` (one ``principal namespaces="git" key``
  line per trusted key, as ``ssh-keygen -Y`` reads it).
- ``verify: {gpg: {keyring: FILE}}``: FILE's public keys are imported into a
  temporary ``GNUPGHOME`` made for this check (no agent is started, nothing is
  left behind) and trusted, because listing them there is the operator's trust
  decision; no other keyring of the host is read.

Only the commit the ref points at is checked (as Flux does): its signature
covers its tree and parents. A result is remembered per process for the
commit, the file and the file's size and modification time.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

from shared.errors import SourceError, TransientError
from shared.spec.model import Source, Verify
from workers.fetch.gitcli import GitFailed, GitTimeout, local_environment, run_git

_FILE_KEY = {"ssh": "allowedSigners", "gpg": "keyring"}
_REMEMBERED = 1024
_REASONS = {
    "N": "is not signed",
    "B": "has a bad signature (the commit or its signature was altered)",
    "U": "is signed by a key that is not trusted",
    "E": "has a signature that cannot be checked (its key is unknown)",
    "X": "has an expired signature",
    "Y": "is signed by an expired key",
    "R": "is signed by a revoked key",
}


class Verifier:
    """Checks commit signatures for one ``SourceCache``; remembers what it accepted."""

    def __init__(self, environ: Mapping[str, str], timeout: float) -> None:
        self._environ = environ
        self._timeout = timeout
        self._accepted: OrderedDict[tuple, None] = OrderedDict()

    def verify_revision(self, source: Source, mirror: Path, sha: str) -> None:
        """Return when ``sha`` carries a good signature by a trusted key; else SourceError."""
        verify = source.verify
        if verify is None:
            return
        where = f"source {source.name}: verify.{verify.kind}.{_FILE_KEY[verify.kind]}"
        try:
            st = os.stat(verify.file)
            if not os.access(verify.file, os.R_OK):
                raise PermissionError(verify.file)
        except OSError:
            raise SourceError(f"{where}: {verify.file} is not readable") from None
        key = (sha, verify.kind, os.path.abspath(verify.file), st.st_size, st.st_mtime_ns)
        if key in self._accepted:
            self._accepted.move_to_end(key)
            return
        code, signer_key, signer = self._status(source, verify, mirror, sha)
        if code != "G":
            raise SourceError(_refusal(source, verify, sha, code, signer_key, signer))
        self._accepted[key] = None
        while len(self._accepted) > _REMEMBERED:
            self._accepted.popitem(last=False)

    def _status(self, source: Source, verify: Verify, mirror: Path,
                sha: str) -> tuple[str, str, str]:
        if verify.kind == "ssh":
            config = [("gpg.format", "ssh"),
                      ("gpg.ssh.allowedSignersFile", os.path.abspath(verify.file))]
            return self._log(source, mirror, sha, config, {})
        with tempfile.TemporaryDirectory(prefix="fleetsync-gpg-") as home:
            os.chmod(home, 0o700)
            self._import_keyring(source, verify, home)
            return self._log(source, mirror, sha, [("gpg.format", "openpgp")],
                             {"GNUPGHOME": home})

    def _log(self, source: Source, mirror: Path, sha: str, config: list[tuple[str, str]],
             extra: dict[str, str]) -> tuple[str, str, str]:
        genv = local_environment({**self._environ, **extra}, config)
        try:
            out = run_git([f"--git-dir={mirror}", "log", "-1", "--format=%G?%x00%GK%x00%GS",
                           sha, "--"], genv, timeout=self._timeout)
        except GitTimeout as exc:
            raise TransientError(f"source {source.name}: checking the signature of {sha}: "
                                 f"{exc.stderr}") from exc
        except GitFailed as exc:
            raise SourceError(f"source {source.name}: cannot check the signature of {sha}: "
                              f"{exc.stderr}") from exc
        code, signer_key, signer = (out.strip().split("\x00") + ["", "", ""])[:3]
        return code or "N", signer_key, signer

    def _import_keyring(self, source: Source, verify: Verify, home: str) -> None:
        """Import the keyring's public keys into ``home`` and trust each one fully."""
        env = {**{k: v for k, v in self._environ.items() if not k.startswith("GPG")},
               "GNUPGHOME": home, "LC_ALL": "C"}
        base = ["gpg", "--batch", "--no-tty", "--no-autostart", "--quiet"]
        self._gpg(source, verify, [*base, "--import", verify.file], env)
        listing = self._gpg(source, verify, [*base, "--with-colons", "--list-keys"], env)
        trust = "".join(f"{line.split(':')[9]}:6:\n" for line in listing.splitlines()
                        if line.startswith("fpr:"))
        if not trust:
            raise SourceError(f"source {source.name}: verify.gpg.keyring: {verify.file} holds "
                              "no public key")
        self._gpg(source, verify, [*base, "--import-ownertrust"], env, trust)

    def _gpg(self, source: Source, verify: Verify, args: list[str], env: dict[str, str],
             stdin: str | None = None) -> str:
        try:
            done = subprocess.run(args, env=env, input=stdin, capture_output=True, text=True,
                                  timeout=self._timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TransientError(f"source {source.name}: gpg: {exc}") from exc
        if done.returncode != 0:
            said = " | ".join(done.stderr.strip().splitlines()[-2:])
            raise SourceError(f"source {source.name}: verify.gpg.keyring: cannot read "
                              f"{verify.file} ({said})")
        return done.stdout


def _refusal(source: Source, verify: Verify, sha: str, code: str, signer_key: str,
             signer: str) -> str:
    reason = _REASONS.get(code, f"has a signature git reports as {code!r}")
    by = f" {signer}" if signer else ""
    if code == "U" and verify.kind == "ssh":
        reason = f"is signed by key {signer_key}, which is not in allowedSigners {verify.file}"
    elif code == "E" and verify.kind == "gpg":
        reason = f"is signed by key {signer_key}{by}, which is not in keyring {verify.file}"
    elif code in ("B", "X", "Y", "R") and signer_key:
        reason += f" (key {signer_key}{by})"
    return (f"source {source.name}: commit {sha} {reason}; refusing it (verify.{verify.kind} "
            "requires a good signature by a trusted key), the last verified revision stays")
