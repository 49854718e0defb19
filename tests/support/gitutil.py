"""Real Git repositories on disk for tests: a work repo plus the bare repo fetchers read.

``GitRepo(path)`` makes a non-bare repository with a local identity; tests write
files, commit, tag and branch there, then ``push()`` into a bare repository next
to it whose ``bare_url()`` (``file://...``) goes into a ``Source``. Everything
runs the git CLI with a clean, prompt-free environment, so it is fast and does
not depend on the developer's global git configuration.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from shared.spec.model import Auth, Source

_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run git and return its stdout; raise with stderr on failure. ``env`` adds variables."""
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_CONFIG_NOSYSTEM="1", **extra)
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


class GitRepo:
    """A work repository at ``path`` on branch ``main``, pushed to ``bare_path`` on demand."""

    def __init__(self, path: Path | str, *, bare_path: Path | str | None = None) -> None:
        self.path = Path(path)
        self.bare_path = Path(bare_path) if bare_path else self.path.with_name(
            self.path.name + ".git")
        self.path.mkdir(parents=True, exist_ok=True)
        self._git("init", "-q", "-b", "main")
        for key, value in (("user.name", "Test Author"), ("user.email", "author@example.com"),
                           ("commit.gpgsign", "false"), ("tag.gpgsign", "false"),
                           ("core.hooksPath", "/dev/null")):
            self._git("config", key, value)

    def _git(self, *args: str) -> str:
        return git(*args, cwd=self.path)

    def write(self, relpath: str, text: str) -> Path:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target

    def symlink(self, relpath: str, points_to: str) -> None:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(points_to)

    def remove(self, relpath: str) -> None:
        self._git("rm", "-q", "-r", "--", relpath)

    def commit(self, message: str) -> str:
        """Stage everything and commit (empty commits allowed); return the new SHA."""
        self._git("add", "-A")
        self._git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def signed_commit(self, message: str, key: str, fmt: str = "ssh",
                      env: dict[str, str] | None = None) -> str:
        """Commit signed with ``key`` (an ssh private key file, or a gpg key id with ``fmt``
        ``openpgp`` and ``GNUPGHOME`` in ``env``); return the new SHA."""
        self._git("add", "-A")
        git("-c", f"gpg.format={fmt}", "-c", f"user.signingkey={key}", "commit", "-q",
            "--allow-empty", "-S", "-m", message, cwd=self.path, env=env)
        return self.head()

    def head(self) -> str:
        return self._git("rev-parse", "HEAD").strip()

    def tag(self, name: str, message: str | None = None, ref: str = "HEAD") -> None:
        """A lightweight tag, or an annotated one when ``message`` is given."""
        if message is None:
            self._git("tag", "-f", name, ref)
        else:
            self._git("tag", "-f", "-a", name, "-m", message, ref)

    def revert(self, sha: str) -> str:
        self._git("revert", "--no-edit", sha)
        return self.head()

    def branch(self, name: str) -> None:
        """Create (or reset) branch ``name`` at HEAD and switch to it."""
        self._git("checkout", "-q", "-B", name)

    def switch(self, name: str) -> None:
        self._git("checkout", "-q", name)

    def push(self) -> None:
        """Make the bare repository an exact copy: branches and tags, deletions included."""
        if not (self.bare_path / "HEAD").exists():
            git("init", "-q", "--bare", "-b", "main", str(self.bare_path))
            git("config", "http.receivepack", "true", cwd=self.bare_path)
        self._git("push", "-q", "--force", "--prune", str(self.bare_path),
                  "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*")

    def bare_url(self) -> str:
        """Push, then return the bare repository's ``file://`` URL."""
        self.push()
        return self.bare_path.resolve().as_uri()


def src(url: str, kind: str = "branch", ref: str = "main", auth: Auth = Auth()) -> Source:
    """A source named ``platform`` for ``url``, following ``kind`` ``ref``."""
    return Source(name="platform", url=url, ref_kind=kind, ref=ref, interval=60.0, auth=auth)
