"""``fleetsync health FILE...`` as a person writing checks types it: verdicts, rules, messages."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT

OBJECTS = """\
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: prod, generation: 2}
  spec: {replicas: 3}
  status: {observedGeneration: 2, replicas: 3, updatedReplicas: 3, readyReplicas: 1,
           availableReplicas: 1}
- apiVersion: cert-manager.io/v1
  kind: Certificate
  metadata: {name: tls, namespace: prod, generation: 1}
  status:
    conditions:
    - {type: Ready, status: "False", reason: Failed, message: issuer not found}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: r, namespace: prod}
status: {phase: Healthy}
"""

FLEET = """\
sources: [{name: s, url: https://git.example.com/s.git, branch: main}]
clusters: [{name: c}]
applications:
  - name: web
    source: s
    path: p
    clusters: {names: [c]}
    healthChecks:
      - apiVersion: cert-manager.io/v1
        kind: Certificate
        current: status.conditions.exists(e, e.type == 'Ready' && e.status == 'True')
        failed: status.conditions.exists(e, e.type == 'Ready' && e.status == 'False')
"""

LUA = """\
hs = {status = "Progressing", message = "lua says wait"}
if obj.status ~= nil and obj.status.phase == "Healthy" then
  hs.status = "Healthy"
  hs.message = "lua says healthy"
end
return hs
"""


def health(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", "health", *args], cwd=ROOT,
                          capture_output=True, text=True, input=stdin, timeout=120)


def test_verdicts_rules_and_messages_in_input_order(tmp_path: Path) -> None:
    (tmp_path / "objects.yaml").write_text(OBJECTS)
    proc = health(str(tmp_path / "objects.yaml"), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["kind"], r["namespace"], r["name"]) for r in rows] == [
        ("Deployment", "prod", "web"), ("Certificate", "prod", "tls"), ("Rollout", "prod", "r")]
    assert rows[0] == {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "prod",
                       "name": "web", "verdict": "Progressing",
                       "rule": "built-in apps/Deployment", "message": "1/3 replicas available"}
    assert rows[1]["verdict"] == "Degraded" and "issuer not found" in rows[1]["message"]
    table = health(str(tmp_path / "objects.yaml")).stdout.splitlines()
    assert table[0] == ("Deployment/prod/web: Progressing [built-in apps/Deployment]: "
                        "1/3 replicas available")


def test_the_applications_cel_checks_and_a_lua_directory_decide(tmp_path: Path) -> None:
    (tmp_path / "objects.yaml").write_text(OBJECTS)
    (tmp_path / "fleet.yaml").write_text(FLEET)
    script = tmp_path / "lua" / "argoproj.io" / "Rollout" / "health.lua"
    script.parent.mkdir(parents=True)
    script.write_text(LUA)
    proc = health("-f", str(tmp_path / "fleet.yaml"), "--app", "web", "--lua-dir",
                  str(tmp_path / "lua"), "-o", "json", str(tmp_path / "objects.yaml"))
    assert proc.returncode == 0, proc.stderr
    rows = {r["kind"]: r for r in json.loads(proc.stdout)}
    assert rows["Certificate"]["rule"] == "cel: cert-manager.io/Certificate"
    assert rows["Certificate"]["verdict"] == "Degraded"
    assert rows["Rollout"] == {**rows["Rollout"], "verdict": "Healthy",
                               "rule": "lua: argoproj.io/Rollout", "message": "lua says healthy"}
    without_app = json.loads(health("-f", str(tmp_path / "fleet.yaml"), "-o", "json",
                                    str(tmp_path / "objects.yaml")).stdout)
    assert without_app[1]["rule"] != "cel: cert-manager.io/Certificate"   # the app's own


def test_json_documents_and_stdin() -> None:
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "status": {"phase": "Succeeded"}}
    proc = health("-", "-o", "json", stdin=json.dumps(doc))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["verdict"] == "Healthy"


def test_bad_input_is_named_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: ok}
        ---
        just: a mapping
        """))
    proc = health(str(tmp_path / "bad.yaml"))
    assert proc.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}:5: not a Kubernetes object" in proc.stderr
    missing = health(str(tmp_path / "nowhere.yaml"))
    assert missing.returncode == 1 and "nowhere.yaml: cannot read" in missing.stderr
    assert "--app needs the fleet spec" in health("--app", "web", str(tmp_path / "bad.yaml")
                                                  ).stderr
    broken = tmp_path / "lua" / "example.com" / "W" / "health.lua"
    broken.parent.mkdir(parents=True)
    broken.write_text("if then\n")
    proc = health("--lua-dir", str(tmp_path / "lua"), str(tmp_path / "bad.yaml"))
    assert proc.returncode == 1 and f"{broken}:1:" in proc.stderr
