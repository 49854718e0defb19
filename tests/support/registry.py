"""A real OCI registry for tests: go-containerregistry's ``registry`` behind loopback fronts.

``registry`` (built by ``fleetsync dev build``) serves the distribution API in
memory on a port it picks; ``devtools.registryproxy`` fronts it as registries
are met in the wild. One registry process per test session; its fronts share
its content, so a chart pushed through one is read through any other:

- ``plain``: plain HTTP, no auth (``insecure: true`` sources, ``--plain-http``);
- ``basic``: HTTPS with a certificate from a test CA (``ca_file``) and basic auth;
- ``token``: HTTPS and ``WWW-Authenticate: Bearer`` with ``/token`` on the same origin;
- ``token_elsewhere``: the same with the token realm on another port (another origin).

``USER``/``PASSWORD`` are the only account. Helpers push with the real clients:
``helm_push`` (``helm push`` of a packaged chart), ``crane`` and ``oras`` (argv
as on a command line, with a Docker config holding the account and
``SSL_CERT_FILE`` naming the test CA). Tests take unique repository names
(``unique_repo``) so that they never see each other's tags.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from devtools.gobuild import BinaryError
from devtools.gotools import find_tool
from devtools.registryproxy import RegistryProxy
from tests.conftest import need

USER = "fleet-bot"
PASSWORD = "s3cret-Registry-pw"
_counter = itertools.count(1)


def tool(name: str) -> Path:
    try:
        found = find_tool(name)
    except BinaryError as exc:
        need(name, str(exc))
    if found is None:
        need(name, "run `fleetsync dev build` (or .ci/run) first")
    return found


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a serving certificate it signs for 127.0.0.1 and localhost:
    (ca.pem, cert.pem, key.pem)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key = directory / "ca.pem", directory / "ca-key.pem"
    cert, key, csr = directory / "cert.pem", directory / "key.pem", directory / "cert.csr"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "extendedKeyUsage=serverAuth\n")
    for argv in (
        ["req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
         "-subj", "/CN=fleetsync test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)],
    ):
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=30)
    return ca, cert, key


def _start_registry(binary: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """``registry -port 0``; the port it picked, read from its log."""
    out = log.open("wb")
    proc = subprocess.Popen([str(binary), "-port", "0"], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "serving on port " in text:
            port = int(text.split("serving on port ", 1)[1].split()[0])
            return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"registry did not start: {log.read_text(errors='replace')[-2000:]}")


class Registry:
    """The registry process and its fronts (see the module docstring)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ca_file, cert, key = make_ca(workdir)
        self.cert, self.key = cert, key          # for more fronts a test starts itself
        self.proc, self.upstream_port = _start_registry(tool("registry"), workdir / "registry.log")
        upstream = ("127.0.0.1", self.upstream_port)
        users = {USER: PASSWORD}
        self.plain = RegistryProxy(upstream)
        self.basic = RegistryProxy(upstream, auth="basic", users=users, cert=str(cert), key=str(key))
        self.token = RegistryProxy(upstream, auth="token", users=users, cert=str(cert), key=str(key))
        self.token_elsewhere = RegistryProxy(upstream, auth="token", users=users, cert=str(cert),
                                             key=str(key), separate_realm=True)
        self.fronts = (self.plain, self.basic, self.token, self.token_elsewhere)
        self.docker_config = workdir / "docker"
        self.docker_config.mkdir()
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (self.docker_config / "config.json").write_text(json.dumps(
            {"auths": {front.host: {"auth": auth} for front in self.fronts}}))
        self.helm_home = workdir / "helm"

    def env(self) -> dict[str, str]:
        """For the push clients: the test CA trusted, the account in a Docker config."""
        return {"PATH": os.defpath, "HOME": str(self.workdir), "DOCKER_CONFIG": str(self.docker_config),
                "SSL_CERT_FILE": str(self.ca_file)}

    def _run(self, argv: list[str], env: dict[str, str] | None = None) -> str:
        done = subprocess.run(argv, env=env or self.env(), capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def crane(self, *args: str) -> str:
        return self._run([str(tool("crane")), *args])

    def oras(self, *args: str, cwd: Path | None = None) -> str:
        argv = [str(tool("oras")), *args]
        done = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=120,
                              cwd=cwd)
        if done.returncode != 0:
            raise RuntimeError(f"oras {' '.join(args[:2])} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def helm_push(self, helm: Path, archive: Path, front: RegistryProxy, repo: str) -> str:
        """``helm push ARCHIVE oci://HOST/REPO`` with the account (and the test CA over
        HTTPS, ``--plain-http`` otherwise); returns helm's output (it names the digest)."""
        tls = ["--ca-file", str(self.ca_file)] if front.state.tls else ["--plain-http"]
        creds = ["--username", USER, "--password", PASSWORD] if front.state.auth != "none" else []
        env = {**self.env(), "HELM_CACHE_HOME": str(self.helm_home / "cache"),
               "HELM_CONFIG_HOME": str(self.helm_home / "config"),
               "HELM_DATA_HOME": str(self.helm_home / "data"),
               "HELM_REGISTRY_CONFIG": str(self.helm_home / "registry.json")}
        done = subprocess.run([str(helm), "push", str(archive), f"oci://{front.host}/{repo}",
                               *tls, *creds], env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"helm push failed: {done.stdout}{done.stderr}")
        return done.stdout + done.stderr

    def digest(self, ref: str) -> str:
        """The manifest digest of ``HOST/REPO:TAG`` (crane, through the plain front)."""
        return self.crane("digest", "--insecure", ref).strip()

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.plain.url}/v2/", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def close(self) -> None:
        for front in self.fronts:
            front.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def unique_repo(prefix: str = "charts") -> str:
    """A repository path no other test in this session uses."""
    return f"{prefix}/t{os.getpid()}-{next(_counter)}"


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    with tempfile.TemporaryDirectory(prefix="registry-") as workdir:
        found = Registry(Path(workdir))
        try:
            yield found
        finally:
            found.close()
