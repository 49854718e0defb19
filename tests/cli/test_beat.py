"""Beat's schedule follows the fleet spec, without restarting beat."""

from __future__ import annotations

import os
import time
from pathlib import Path

from scheduler.beat import FleetScheduler, entries
from shared.celery_app import make_app
from shared.settings import Settings
from shared.spec.load import load

SPEC = """\
sources:
  - name: platform
    url: file:///srv/gitops.git
    branch: main
    interval: 2m
clusters:
{clusters}
applications:
  - name: web
    source: platform
    path: clusters/${{cluster_name}}
    clusters: {{matchLabels: {{env: prod}}}}
"""


def _cluster(name: str, interval: str = "30s") -> str:
    return f"  - name: {name}\n    labels: {{env: prod}}\n    interval: {interval}\n"


def write(path: Path, *clusters: str) -> None:
    path.write_text(SPEC.format(clusters="".join(clusters)))
    os.utime(path, (time.time() + 1, time.time() + 1))   # a new mtime even within one second


def test_entries_one_reconcile_per_cluster_and_one_fetch_per_source(tmp_path):
    spec = tmp_path / "fleet.yaml"
    write(spec, _cluster("a"), _cluster("b", "5m"))
    got = entries(load(str(spec)))
    assert set(got) == {"reconcile:a", "reconcile:b", "fetch:platform"}
    assert got["reconcile:b"]["schedule"].total_seconds() == 300
    assert got["fetch:platform"]["args"] == ["platform"]


def test_scheduler_picks_up_added_and_removed_clusters(tmp_path, monkeypatch):
    spec = tmp_path / "fleet.yaml"
    write(spec, _cluster("a"))
    monkeypatch.setenv("FLEETSYNC_FLEET", str(spec))
    scheduler = FleetScheduler(app=make_app(Settings(redis_url="redis://127.0.0.1:1/0")), lazy=True)
    scheduler.setup_schedule()
    assert set(scheduler.schedule) == {"reconcile:a", "fetch:platform"}
    first = scheduler.schedule["reconcile:a"]
    assert first.is_due()[1] <= 5.0                  # a new cluster is reconciled soon

    write(spec, _cluster("a"), _cluster("b"))
    scheduler._reload_spec()
    assert set(scheduler.schedule) == {"reconcile:a", "reconcile:b", "fetch:platform"}

    write(spec, _cluster("b"))
    scheduler._reload_spec()
    assert set(scheduler.schedule) == {"reconcile:b", "fetch:platform"}


def test_invalid_spec_keeps_the_last_good_schedule(tmp_path, monkeypatch):
    spec = tmp_path / "fleet.yaml"
    write(spec, _cluster("a"))
    monkeypatch.setenv("FLEETSYNC_FLEET", str(spec))
    scheduler = FleetScheduler(app=make_app(Settings(redis_url="redis://127.0.0.1:1/0")), lazy=True)
    scheduler.setup_schedule()
    spec.write_text("sources: [oops\n")
    os.utime(spec, (time.time() + 2, time.time() + 2))
    scheduler._reload_spec()
    assert set(scheduler.schedule) == {"reconcile:a", "fetch:platform"}
