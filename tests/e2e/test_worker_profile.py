"""bench/worker_profile.py's attribution of CPU to parts: each function's own time goes to
its file's part, and a function of no part takes its callers' parts, in proportion."""

from __future__ import annotations

import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import worker_profile  # noqa: E402

SITE = "/venv/lib/python3.11/site-packages"
URLLIB3 = (f"{SITE}/urllib3/connectionpool.py", 10, "urlopen")
REDIS = (f"{SITE}/redis/client.py", 20, "execute_command")
SOCKET = ("/usr/lib/python3.11/socket.py", 30, "recv_into")
YAML = (f"{SITE}/yaml/constructor.py", 40, "construct_object")
RENDER = ("/src/workers/render/engine.py", 50, "render")
ORPHAN = ("/usr/lib/python3.11/copy.py", 60, "deepcopy")


def row(own: float, callers: dict | None = None) -> tuple:
    """A pstats row: (primitive calls, calls, own time, cumulative time, callers)."""
    return (1, 1, own, own, callers or {})


def edge(own: float) -> tuple:
    return (1, 1, own, own)


def test_files_map_to_parts():
    assert worker_profile.own_part(URLLIB3[0]) == "HTTP client"
    assert worker_profile.own_part(REDIS[0]) == "Redis"
    assert worker_profile.own_part(RENDER[0]) == "render"
    assert worker_profile.own_part("/src/workers/apply/observe.py") == "engine"
    assert worker_profile.own_part("/src/workers/run/runner.py") == "fleetsync, other"
    assert worker_profile.own_part(f"{SITE}/kombu/messaging.py") == "Celery"
    assert worker_profile.own_part(YAML[0]) is None


def test_a_function_of_no_part_takes_its_callers_parts_in_proportion():
    stats = {
        URLLIB3: row(1.0),
        REDIS: row(2.0),
        RENDER: row(0.5),
        # socket: 3 s of its own, 1 s of it called from urllib3 and 2 s from redis-py
        SOCKET: row(3.0, {URLLIB3: edge(1.0), REDIS: edge(2.0)}),
        YAML: row(4.0, {RENDER: edge(4.0)}),
        ORPHAN: row(0.25),
    }
    parts = worker_profile.attribute(stats)
    assert parts == {"HTTP client": 2.0, "Redis": 4.0, "render": 4.5, "other": 0.25}
    assert sum(parts.values()) == sum(r[2] for r in stats.values())


def test_a_cycle_of_functions_of_no_part_ends():
    a = ("/usr/lib/python3.11/a.py", 1, "a")
    b = ("/usr/lib/python3.11/b.py", 1, "b")
    stats = {RENDER: row(1.0), a: row(1.0, {b: edge(1.0), RENDER: edge(1.0)}),
             b: row(1.0, {a: edge(1.0)})}
    parts = worker_profile.attribute(stats)
    assert abs(sum(parts.values()) - 3.0) < 1e-9
    assert parts["render"] >= 1.5
