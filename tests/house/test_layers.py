"""The house rules that keep the layers apart, checked as tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e .[test])")
    proc = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def import_cycles(graph, modules: set[str]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(
                        graph.find_modules_directly_imported_by(child) & modules))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                if len(members) > 1:
                    cycles.append(sorted(members))
    return cycles


def test_no_import_cycles_anywhere():
    """No circle between modules, lazy imports inside functions included: a lazy import
    that only dodges a cycle is a wall in the wrong place."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("shared", "workers", "scheduler", "devtools")
    modules = {m for m in graph.modules if m.split(".")[0] in
               ("shared", "workers", "scheduler", "devtools")}
    assert import_cycles(graph, modules) == []


def test_the_cycle_finder_finds_a_cycle():
    class Graph:
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

        def find_modules_directly_imported_by(self, m):
            return self.edges.get(m, set())

    assert import_cycles(Graph(), {"a", "b", "c", "d"}) == [["a", "b", "c"]]


def test_mypy_is_clean():
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.skip("mypy is not installed (pip install -e .[test])")
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_scheduler_runs_without_workers_or_kubernetes_loaded():
    code = ("import sys, scheduler.cli; scheduler.cli.build_parser();"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('workers', 'kubernetes')];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dev_and_demo_come_from_devtools_through_entry_points():
    import scheduler.cli

    plugins = scheduler.cli.plugin_commands()
    assert {"dev", "demo"} <= set(plugins)
    assert all(add_parser.__module__.startswith("devtools.") for add_parser in plugins.values())
    parser = scheduler.cli.build_parser()
    assert parser.parse_args(["dev", "status"]).dev_command == "status"
    assert parser.parse_args(["demo", "--interval", "3"]).interval == 3


def test_cli_leaves_out_commands_whose_package_is_not_installed(monkeypatch):
    import scheduler.cli
    from importlib.metadata import EntryPoint

    missing = EntryPoint("gone", "fleetsync_no_such_package.cli:add_parser", "fleetsync.commands")
    monkeypatch.setattr(scheduler.cli, "entry_points", lambda group: [missing])
    assert scheduler.cli.plugin_commands() == {}
    with pytest.raises(SystemExit):
        scheduler.cli.build_parser().parse_args(["gone"])


def test_docker_compose_file_is_valid():
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    env = {**os.environ, "FLOWER_BASIC_AUTH": "admin:change-me"}
    proc = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    services = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "config",
                               "--services"], cwd=ROOT, capture_output=True, text=True,
                              env=env).stdout
    assert set(services.split()) >= {"redis", "worker", "beat", "flower"}
