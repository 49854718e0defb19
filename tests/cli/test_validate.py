"""`fleetsync validate` through the CLI: exit 0 with a summary, or 1 with every problem."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

GOOD = """\
sources:
  - name: gitops
    url: file:///srv/gitops.git
    branch: main
clusters:
  - name: production
    labels: {env: production}
applications:
  - name: web
    source: gitops
    path: clusters/${cluster_name}
    clusters: {matchLabels: {env: production}}
"""


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", "validate", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=env)


def test_valid_spec(tmp_path):
    spec = tmp_path / "fleet.yaml"
    spec.write_text(GOOD)
    proc = run("-f", str(spec))
    assert proc.returncode == 0, proc.stderr
    assert "valid: 1 source(s), 1 cluster(s), 1 application(s), 1 sync unit(s)" in proc.stdout


def test_every_problem_with_file_line_and_field(tmp_path):
    spec = tmp_path / "fleet.yaml"
    spec.write_text(GOOD.replace("source: gitops", "source: gitopz").replace("branch: main",
                                                                                "branch: main\n    tag: v1"))
    proc = run("-f", str(spec))
    assert proc.returncode == 1
    assert f"{spec}:11: applications[0].source: no source named 'gitopz'" in proc.stderr
    assert f"{spec}:2:" in proc.stderr and "exactly one of" in proc.stderr
    assert "nothing will be scheduled" in proc.stderr


def test_no_file_given(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "FLEETSYNC_FLEET"}
    proc = run(env=env)
    assert proc.returncode == 1 and "FLEETSYNC_FLEET" in proc.stderr
