"""`fleetsync flower`'s command line and the CLI's links to Flower, as pure functions.

The browser test (test_flower_browser.py) shows the same options at work in a
real Flower; these pin what the command line is for each way an operator
configures it: fleetsync's defaults, Flower's own options on the command line,
``FLOWER_*`` variables, and the loopback-only rule without authentication.
"""

from __future__ import annotations

import argparse

import pytest

from scheduler.commands.runners import (FLOWER_COLUMNS, FLOWER_MAX_TASKS, flower_argv,
                                        flower_db)
from scheduler.commands.status import format_history, format_status
from scheduler.links import task_url
from shared.settings import from_env, state_dir


def flower_args(*extra: str, address: str = "127.0.0.1") -> argparse.Namespace:
    return argparse.Namespace(port=5555, address=address, extra=list(extra))


def options(argv: list[str]) -> dict[str, str]:
    """Flower's ``--name=value`` options after the ``flower`` sub-command (last one wins)."""
    found: dict[str, str] = {}
    for arg in argv[argv.index("flower") + 1:]:
        name, _, value = arg.lstrip("-").partition("=")
        found[name.replace("-", "_")] = value
    return found


def test_defaults_show_args_and_results_and_keep_history() -> None:
    env = {"FLEETSYNC_FLOWER_DB": "/var/lib/fleetsync/flower.db"}
    got = options(flower_argv(flower_args(), env))
    assert got["tasks_columns"] == FLOWER_COLUMNS
    assert {"args", "result", "exception", "state", "name", "uuid"} <= set(FLOWER_COLUMNS.split(","))
    assert got["persistent"] == "True" and got["db"] == "/var/lib/fleetsync/flower.db"
    assert int(got["state_save_interval"]) > 0
    assert int(got["max_tasks"]) == FLOWER_MAX_TASKS
    assert env["FLOWER_UNAUTHENTICATED_API"] == "true"       # loopback: scripts may POST tasks


def test_default_state_file_is_one_per_broker_without_the_password() -> None:
    a = flower_db({"FLEETSYNC_REDIS_URL": "redis://:hunter2@redis.internal:6380/3"})
    b = flower_db({"FLEETSYNC_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert a.parent == b.parent == state_dir()
    assert a.name == "flower-redis.internal-6380-3.db" and "hunter2" not in str(a)
    assert b.name == "flower-127.0.0.1-6379-0.db" and flower_db({}) == b


@pytest.mark.parametrize("given", ["--max_tasks=500", "--max-tasks=500"])
def test_an_option_on_the_command_line_replaces_the_default(given: str) -> None:
    argv = flower_argv(flower_args(given), {})
    assert [a for a in argv if "max" in a] == [given]


def test_flower_variables_are_not_overridden_by_defaults() -> None:
    """Flower reads FLOWER_* before its command line: a default there would win."""
    env = {"FLOWER_MAX_TASKS": "500", "FLOWER_DB": "/data/flower", "FLOWER_URL_PREFIX": "flower",
           "FLOWER_TASKS_COLUMNS": "name,state"}
    got = options(flower_argv(flower_args(), env))
    assert not {"max_tasks", "db", "tasks_columns", "url_prefix"} & set(got)
    assert got["persistent"] == "True"


@pytest.mark.parametrize("extra,env", [
    (["--basic_auth=ops:secret"], {}),
    (["--basic-auth=ops:secret"], {}),
    (["--auth=.*@example\\.com", "--auth_provider=flower.views.auth.GithubLoginHandler"], {}),
    ([], {"FLOWER_BASIC_AUTH": "ops:secret"}),
    ([], {"FLOWER_AUTH": ".*@example\\.com", "FLOWER_AUTH_PROVIDER": "flower.views.auth.GithubLoginHandler"}),
])
def test_authenticated_flower_may_listen_beyond_loopback(extra: list[str], env: dict) -> None:
    argv = flower_argv(flower_args(*extra, address="0.0.0.0"), env)
    assert "--address=0.0.0.0" in argv and "FLOWER_UNAUTHENTICATED_API" not in env


@pytest.mark.parametrize("extra", [[], ["--auth_provider=flower.views.auth.GithubLoginHandler"],
                                   ["--url_prefix=flower"]])
def test_without_authentication_flower_stays_on_loopback(extra: list[str]) -> None:
    with pytest.raises(SystemExit, match="without authentication"):
        flower_argv(flower_args(*extra, address="0.0.0.0"), {})


def test_url_prefix_passes_through() -> None:
    got = options(flower_argv(flower_args("--url_prefix=ops/flower"), {}))
    assert got["url_prefix"] == "ops/flower"


# -- links from the CLI ---------------------------------------------------------------

def test_flower_url_setting_and_task_links() -> None:
    assert from_env({}).flower_url is None
    url = from_env({"FLEETSYNC_FLOWER_URL": "https://ops.example.com/flower/"}).flower_url
    assert url == "https://ops.example.com/flower"
    assert task_url(url, "abc") == "https://ops.example.com/flower/task/abc"
    assert task_url(url, "") == "" and task_url(None, "abc") == ""


ENTRY = {"started_at": "2025-01-02T03:04:05.000Z", "finished_at": "2025-01-02T03:04:06.000Z",
         "trigger": "beat", "result": "Failed", "revision": "81a51c7d" * 5, "changes": {},
         "task_id": "0f1e2d3c-aaaa-bbbb-cccc-000000000001"}


def test_history_ends_each_line_with_the_flower_link_or_the_task_id() -> None:
    linked = {**ENTRY, "flower_url": task_url("http://127.0.0.1:5555", ENTRY["task_id"])}
    lines = format_history([linked], linked=True).splitlines()
    assert lines[0].split()[-1] == "FLOWER"
    assert lines[1].endswith(f"http://127.0.0.1:5555/task/{ENTRY['task_id']}")
    plain = format_history([ENTRY]).splitlines()
    assert plain[0].split()[-1] == "TASK" and plain[1].endswith(ENTRY["task_id"])


def test_history_names_the_hooks_each_sync_ran() -> None:
    ran = {**ENTRY, "result": "Ready", "hooks": ["PreSync Job/web/migrate-81a51c7-presync",
                                                 "PostSync Job/web/notify"]}
    assert format_history([ran]).splitlines()[2:] == [
        "    hook run: PreSync Job/web/migrate-81a51c7-presync",
        "    hook run: PostSync Job/web/notify"]


def test_status_wide_shows_the_flower_link_before_the_message() -> None:
    row = {"app": "web", "cluster": "production", "phase": "Failed", "revision": "81a51c7d" * 5,
           "last_synced_at": "2025-01-02T03:04:05.000Z", "reason": "RenderError",
           "message": "production/web @81a51c7d: app/config.yaml:1: invalid YAML",
           "flower": "http://127.0.0.1:5555/task/t1"}
    wide = format_status([row], width=80, wide=True).splitlines()
    assert wide[0].split()[-2:] == ["FLOWER", "MESSAGE"]
    assert "http://127.0.0.1:5555/task/t1  RenderError: app/config.yaml:1" in wide[1]
    assert "FLOWER" not in format_status([row], width=200)      # the table stays narrow
