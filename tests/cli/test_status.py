"""``fleetsync status``: one line per unit, the reason first, cut to the terminal.

The pure formatting is tested directly; the CLI runs as a user types it, against
a real Redis holding statuses written by ``StatusStore`` as the workers write them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import pytest
import redis

from scheduler.commands.status import age, fold, format_status, strip_unit, summary
from shared.state.status import StatusStore, UnitStatus
from tests.conftest import ROOT, worker_env

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
REV = "0123456789abcdef0123456789abcdef01234567"
INVALID = ("dev-1/shop @0123456789ab [Job/shop/migrate]: 2 invalid object(s), nothing was applied:\n"
           "  Job/shop/migrate: spec.template is immutable and changed in Git; set force: true "
           "on the application to delete and re-create the object\n"
           "  Service/shop/web: spec.ports[0].port: Invalid value: 70000")
RENDER = "shop/dev-2 @0123456789ab: app/x.yaml:3: not supported: Jsonnet is not rendered by fleetsync"


def row(cluster: str, app: str, phase: str, message: str, reason: str = "") -> dict:
    return {"cluster": cluster, "app": app, "phase": phase, "revision": REV, "message": message,
            "last_synced_at": "2025-01-02T03:03:05.000Z", "reason": reason}


# -- pure -----------------------------------------------------------------------

def test_the_unit_prefix_is_stripped_and_the_object_kept_when_not_repeated() -> None:
    assert strip_unit(RENDER, "shop", "dev-2") == "app/x.yaml:3: not supported: Jsonnet is not rendered by fleetsync"
    assert strip_unit("dev-1/shop @abc [Job/shop/m]: deleted", "shop", "dev-1") == "Job/shop/m: deleted"
    assert strip_unit("other/unit: kept as is", "shop", "dev-1") == "other/unit: kept as is"


def test_multi_line_messages_fold_onto_one_line() -> None:
    assert fold("2 failed:\n  A: x\n  B: y\n") == "2 failed: A: x; B: y"


def test_the_reason_comes_first_for_failures_only() -> None:
    failed = summary(row("dev-1", "shop", "Failed", INVALID, "ApplyFailed"))
    assert failed.startswith("ApplyFailed: 2 invalid object(s), nothing was applied: Job/shop/migrate: "
                             "spec.template is immutable")
    assert "\n" not in failed and "@0123" not in failed
    assert summary(row("dev-1", "shop", "Ready", "1 created")) == "1 created"


def test_age() -> None:
    assert [age(t, NOW) for t in ("2025-01-02T03:04:00.000Z", "2025-01-02T02:04:05Z",
                                  "2024-12-30T03:04:05Z", "not a date")] == ["5s", "1h", "3d", "not a date"]


def test_table_is_one_line_per_unit_within_the_width() -> None:
    table = [row("dev-1", "shop", "Failed", INVALID, "ApplyFailed"),
             row("dev-2", "shop", "Failed", RENDER, "RenderUnsupported"),
             row("dev-2", "web", "Ready", "3 created")]
    text = format_status(table, width=100, now=NOW)
    lines = text.splitlines()
    assert len(lines) == 4 and all(len(line) <= 100 for line in lines)
    assert lines[0].split() == ["CLUSTER", "APP", "PHASE", "REVISION", "AGE", "MESSAGE"]
    assert lines[1].split()[:6] == ["dev-1", "shop", "Failed", "01234567", "1m", "ApplyFailed:"]
    assert lines[1].endswith("…") and lines[3].endswith("3 created")
    wide = format_status(table, width=100, wide=True, now=NOW).splitlines()
    assert len(wide) == 4 and wide[1].endswith("Service/shop/web: spec.ports[0].port: Invalid value: 70000")
    assert "2025-01-02T03:03:05.000Z" in wide[1] and "0123456789ab" in wide[1]


# -- the CLI against a real Redis -----------------------------------------------

@pytest.fixture()
def statuses(isolated_redis_url: str) -> str:
    client = redis.Redis.from_url(isolated_redis_url, decode_responses=True)
    store = StatusStore(client)
    for r in (row("dev-1", "shop", "Failed", INVALID, "ApplyFailed"),
              row("dev-2", "shop", "Failed", RENDER, "RenderUnsupported"),
              row("dev-2", "web", "Ready", "3 created")):
        store.set_status(UnitStatus(r["app"], r["cluster"], phase=r["phase"], revision=r["revision"], message=r["message"],
                                    last_synced_at=r["last_synced_at"], reason=r["reason"]))
    client.close()
    return isolated_redis_url


def status(url: str, *args: str, columns: int = 90) -> subprocess.CompletedProcess:
    env = worker_env(url, COLUMNS=str(columns))
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "status", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_table_fits_the_terminal(statuses: str) -> None:
    lines = status(statuses, columns=90).stdout.splitlines()
    assert len(lines) == 4 and all(len(line) <= 90 for line in lines)
    assert "RenderUnsupported: app/x.yaml:3: not supported" in lines[2]


def test_cli_wide_and_json_give_the_whole_message(statuses: str) -> None:
    wide = status(statuses, "-o", "wide", columns=60).stdout.splitlines()
    assert len(wide) == 4
    assert wide[1].endswith("Service/shop/web: spec.ports[0].port: Invalid value: 70000")
    rows = json.loads(status(statuses, "-o", "json", "--cluster", "dev-1").stdout)
    assert [r["message"] for r in rows] == [INVALID]
