"""`fleetsync windows` through the CLI: the spec's windows, their units, open or not, next change."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

SPEC = """\
sources:
  - name: gitops
    url: https://example.com/gitops.git
    branch: main
clusters:
  - name: production
    labels: {env: production}
  - name: staging
    labels: {env: staging}
applications:
  - name: web
    source: gitops
    path: web
    clusters: {matchLabels: {}}
windows:
  - name: friday-freeze
    kind: deny
    schedule: "0 18 * * 5"
    duration: 60h
    timeZone: Europe/Berlin
    clusters: {matchLabels: {env: production}}
  - {name: nightly, kind: allow, schedule: "0 2 * * *", duration: 2h}
"""


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", "windows", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=env)


def test_json(tmp_path):
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SPEC)
    proc = run("-o", "json", "--fleet", str(spec), "--at", "2026-12-05T12:00:00+00:00")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    freeze, nightly = out["windows"]
    assert freeze["name"] == "friday-freeze" and freeze["kind"] == "deny"
    assert freeze["units"] == [{"application": "web", "cluster": "production"}]
    assert freeze["open"] is True and freeze["next_close"] == "2026-12-07T06:00:00+01:00"
    assert nightly["units"] == [{"application": "web", "cluster": "production"},
                                {"application": "web", "cluster": "staging"}]
    assert nightly["open"] is False and nightly["next_open"] == "2026-12-06T02:00:00+00:00"


def test_text_and_the_fleet_from_the_environment(tmp_path):
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SPEC)
    env = {**os.environ, "FLEETSYNC_FLEET": str(spec)}
    proc = run("--at", "2026-12-05T12:00:00+00:00", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == (
        "friday-freeze (deny, '0 18 * * 5' Europe/Berlin): open, closes "
        "2026-12-07T06:00:00+01:00; units: web@production")


def test_an_invalid_spec_is_refused(tmp_path):
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SPEC.replace("60h", "40d"))
    proc = run("-f", str(spec))
    assert proc.returncode == 1
    assert "windows[0].duration: duration '40d' is longer than 31 days" in proc.stderr
