"""The fleet spec's transport and integrity keys: insecure, knownHosts, sshHostKeyPolicy, verify,
and what `fleetsync validate` says about a local source the workers would refuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.spec.model import Verify
from shared.spec.load import validate_file
from tests.conftest import ROOT

SPEC = """\
sources:
  - name: gitops
    url: {url}
    branch: main
{extra}clusters:
  - name: dev
applications:
  - name: web
    source: gitops
    path: apps/web
    clusters: {{names: [dev]}}
"""


def check(tmp_path: Path, url: str, *extra: str) -> tuple[object, list[str], list[str]]:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SPEC.format(url=url, extra="".join(f"    {line}\n" for line in extra)))
    return validate_file(str(spec))


def test_the_keys_are_read(tmp_path: Path) -> None:
    fleet, problems, warnings = check(tmp_path, "ssh://git@h/x.git", "knownHosts: /etc/kh",
                                      "sshHostKeyPolicy: accept-new",
                                      "verify: {ssh: {allowedSigners: /etc/signers}}")
    assert problems == [] and warnings == []
    source = fleet.sources["gitops"]  # type: ignore[attr-defined]
    assert (source.known_hosts, source.ssh_host_key_policy, source.insecure) == (
        "/etc/kh", "accept-new", False)
    assert source.verify == Verify("ssh", "/etc/signers")
    fleet, problems, _ = check(tmp_path, "https://h/x.git", "verify: {gpg: {keyring: /k.asc}}")
    assert fleet.sources["gitops"].verify == Verify("gpg", "/k.asc")  # type: ignore[attr-defined]


@pytest.mark.parametrize("url, extra, problem", [
    ("http://h/x.git", ["insecure: true", "auth: {usernameEnv: U, passwordEnv: P}"],
     "fleet.yaml:6: sources[0].auth: credentials are never sent over plain http://: use https://"),
    ("https://h/x.git", ["insecure: true"],
     "fleet.yaml:5: sources[0].insecure: only allows plain http:// URLs (it never turns off TLS "
     "or host key checks)"),
    ("https://h/x.git", ["knownHosts: /kh"], "fleet.yaml:5: sources[0].knownHosts: applies to "
                                            "ssh sources only"),
    ("git@h:x.git", ["sshHostKeyPolicy: yes-please"], "fleet.yaml:5: sources[0].sshHostKeyPolicy: "
                                                      "must be one of strict, accept-new, not "
                                                      "'yes-please'"),
    ("git@h:x.git", ["insecure: 'yes'"], "fleet.yaml:5: sources[0].insecure: must be true or false, "
                                           "not a string"),
    ("https://h/x.git", ["verify: {ssh: {allowedSigners: /a}, gpg: {keyring: /k}}"],
     "fleet.yaml:5: sources[0].verify: give exactly one of ssh: {allowedSigners: FILE}, "
     "gpg: {keyring: FILE} or cosign: {publicKey: FILE}"),
    ("https://h/x.git", ["verify: {ssh: {}}"], "fleet.yaml:5: sources[0].verify.ssh.allowedSigners: "
                                               "is required"),
    ("https://h/x.git", ["verify: {pgp: {keyring: /k}}"], "fleet.yaml:5: sources[0].verify: "
                                                          "unknown key 'pgp' (expected one of: ssh, gpg, cosign)"),
])
def test_problems_name_line_and_field(tmp_path: Path, url: str, extra: list[str],
                                      problem: str) -> None:
    fleet, problems, _ = check(tmp_path, url, *extra)
    assert fleet is None and len(problems) == 1 and problems[0].endswith(problem), problems


def test_plain_http_without_insecure_is_a_warning(tmp_path: Path) -> None:
    _, problems, warnings = check(tmp_path, "http://h/x.git")
    assert problems == [] and warnings[0].endswith(
        "fleet.yaml:3: sources[0].url: plain http:// is refused unless the source sets insecure: true")
    assert check(tmp_path, "http://h/x.git", "insecure: true")[1:] == ([], [])


def test_validate_says_when_a_local_source_would_be_refused(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SPEC.format(url="file:///srv/gitops.git", extra=""))
    env = {k: v for k, v in os.environ.items() if k != "FLEETSYNC_ALLOW_LOCAL_SOURCES"}
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "validate", "-f", str(spec)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (f"warning: {spec}:3: sources[0].url: a local source (path or file://) is refused "
            "unless FLEETSYNC_ALLOW_LOCAL_SOURCES=true is set on the workers (it is not set here)"
            ) in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "validate", "-f", str(spec)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**env, "FLEETSYNC_ALLOW_LOCAL_SOURCES": "true"})
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
