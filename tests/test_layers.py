"""The house rules that keep the layers apart, checked as tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e .[test])")
    proc = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


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
