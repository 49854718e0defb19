"""deploy/local/setup.sh: `make demo` builds only the local clusters' binaries, `make test` the rest too.

The script runs as the Makefile runs it, from a copy of the repository's layout
whose ``.venv`` is already installed: its ``fleetsync`` is a stand-in that
records the command line it was given (the real ``fleetsync dev build`` is
tested in test_local_fleet.py and, with only the demo's binaries, by the demo
test). The system packages the script checks for must be present, or it would
install them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, need

SYSTEM = ("redis-server", "git", "openssl")
FOR_TESTS = ("docker-compose", "chromium")


def installed_copy(tmp_path: Path) -> tuple[Path, Path]:
    """(the copy's setup.sh, the file its fleetsync stand-in appends its arguments to)."""
    for name in SYSTEM:
        if shutil.which(name) is None:
            need(name, "setup.sh would install it")
    repo, calls = tmp_path / "repo", tmp_path / "calls"
    (repo / "deploy" / "local").mkdir(parents=True)
    script = repo / "deploy" / "local" / "setup.sh"
    shutil.copy(ROOT / "deploy" / "local" / "setup.sh", script)
    (repo / "pyproject.toml").write_text("")
    venv_bin = repo / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    python = venv_bin / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    stand_in = venv_bin / "fleetsync"
    stand_in.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    stand_in.chmod(0o755)
    installed = repo / ".venv" / ".installed"
    installed.touch()
    later = (repo / "pyproject.toml").stat().st_mtime + 10
    os.utime(installed, (later, later))
    return script, calls


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHON": sys.executable})


def test_demo_setup_builds_only_the_clusters_binaries(tmp_path):
    script, calls = installed_copy(tmp_path)
    proc = run(script)
    assert proc.returncode == 0, proc.stderr
    assert calls.read_text().splitlines() == ["dev build --no-sops --no-helm --no-registry"]
    assert "installing" not in proc.stderr


def test_test_setup_also_builds_helm_sops_and_age_keygen(tmp_path):
    for name in FOR_TESTS:
        if shutil.which(name) is None:
            need(name, "setup.sh --for-tests would install it")
    if not Path("/usr/sbin/sshd").exists():
        need("sshd", "setup.sh --for-tests would install openssh-server")
    script, calls = installed_copy(tmp_path)
    proc = run(script, "--for-tests")
    assert proc.returncode == 0, proc.stderr
    assert calls.read_text().splitlines() == ["dev build --cosign"]
    assert "helm, sops, age-keygen" in proc.stderr

