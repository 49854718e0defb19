"""A real OpenSSH server on loopback that serves bare Git repositories, for tests.

``SshServer(workdir)`` runs ``/usr/sbin/sshd -D -e`` (Debian's ``openssh-server``)
in the foreground on 127.0.0.1 and a free port, with its own host key, config
and ``authorized_keys`` in ``workdir``: nothing of the machine's sshd setup is
read or changed. A client key pair is made beside them; ``url(path)`` gives the
``ssh://`` URL of a repository on disk and ``known_hosts_line()`` the line that
pins the server's host key. git reaches the repository through plain
``git-upload-pack`` in the login shell of the user running the tests.

Use it as a context manager. ``available()`` says why it cannot run (no sshd).
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def available() -> str | None:
    """None when an sshd can be started here, else the reason it cannot."""
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing (Debian package openssh-server)"
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        try:     # sshd started as root wants its privilege separation directory
            Path("/run/sshd").mkdir(mode=0o755)
        except OSError as exc:
            return f"/run/sshd is missing and cannot be made: {exc}"
    return None


def keygen(path: Path, comment: str) -> Path:
    """A new ed25519 key pair at ``path`` (and ``path.pub``); return ``path``."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SshServer:
    def __init__(self, workdir: Path) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.host_key = keygen(self.dir / "host_ed25519", "test host")
        self.client_key = keygen(self.dir / "client_ed25519", "fleetsync test client")
        (self.dir / "authorized_keys").write_text((self.dir / "client_ed25519.pub").read_text())
        self.port = 0
        self.log = self.dir / "sshd.log"
        self._proc: subprocess.Popen | None = None

    def url(self, repo: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{Path(repo).resolve()}"

    def known_hosts_line(self) -> str:
        key = (self.dir / "host_ed25519.pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n"

    def __enter__(self) -> "SshServer":
        for _ in range(5):           # a free port can be taken between probe and bind
            self.port = free_port()
            config = self._write_config()
            log = open(self.log, "ab")
            self._proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config), "-p", str(self.port)],
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
            log.close()
            if self._wait_ready(20):
                return self
            self.stop()
        raise RuntimeError(f"sshd did not start: {self.log.read_text()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
            self._proc = None

    def _write_config(self) -> Path:
        config = self.dir / "sshd_config"
        config.write_text("\n".join([
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            "PidFile none",
            "StrictModes no",          # the temp dir belongs to whoever runs the tests
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {self.user}",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "LogLevel INFO",
        ]) + "\n")
        return config

    def _wait_ready(self, timeout: float) -> bool:
        """Until the server greets with its SSH banner (or it exited)."""
        deadline = time.monotonic() + timeout
        pause = 0.02
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
                    if conn.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                pass
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
        return False
