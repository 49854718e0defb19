"""The audit of operators' actions through the CLI, on the real Redis (no workers, no clusters:
a suspension is written to Redis, a resume enqueues a sync that nobody runs): each action is
one JSON ``audit`` line on stderr and an ``Operator`` entry in the history of each unit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from shared.state.status import StatusStore
from tests.conftest import ROOT, new_redis_db

SPEC = """sources:
  - {name: git, url: https://git.example.com/org/gitops.git, branch: main}
clusters:
  - {name: dev, kubeconfig: /nonexistent}
  - {name: prod, kubeconfig: /nonexistent}
applications:
  - {name: web, source: git, path: apps/web, clusters: {names: [dev, prod]}}
"""


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def audit_lines(stderr: str) -> list[dict]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "audit"]


def test_suspend_and_resume_are_audited_in_the_log_and_each_units_history(
        redis_url: str, tmp_path: Path) -> None:
    url = new_redis_db(redis_url)
    (tmp_path / "fleet.yaml").write_text(SPEC)
    env = {**os.environ, "FLEETSYNC_REDIS_URL": url, "FLEETSYNC_FLEET": str(tmp_path / "fleet.yaml"),
           "PYTHONPATH": str(ROOT)}
    held = cli(env, "suspend", "web", "--by", "alice")
    assert held.returncode == 0, held.stderr
    assert held.stdout.startswith("suspended by alice at ")         # stdout stays the answer
    (line,) = audit_lines(held.stderr)
    assert {k: line[k] for k in ("who", "what", "app", "cluster", "units", "why", "via")} == {
        "who": "alice", "what": "suspend", "app": "web", "cluster": None,
        "units": ["dev/web", "prod/web"], "why": "", "via": "cli"}
    assert line["logger"] == "fleetsync.audit" and line["level"] == "info"
    lifted = cli(env, "resume", "web", "--cluster", "dev", "--by", "bob")
    assert lifted.returncode == 1 and "suspended as a whole" in lifted.stderr
    assert audit_lines(lifted.stderr) == []                           # nothing was done
    lifted = cli(env, "resume", "web", "--by", "bob")
    assert lifted.returncode == 0, lifted.stderr
    (line,) = audit_lines(lifted.stderr)
    assert (line["who"], line["what"], line["task_id"] != "") == ("bob", "resume", True)
    store = StatusStore(redis.Redis.from_url(url, decode_responses=True))
    for cluster in ("dev", "prod"):
        entries = store.history("web", cluster)
        assert [(e["result"], e["message"]) for e in entries] == [
            ("Operator", "resume by bob (cli)"), ("Operator", "suspend by alice (cli)")]
        assert entries[0]["by"] == "bob" and entries[0]["revision"] == ""
