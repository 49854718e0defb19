"""Every log line is one JSON object with its context, and secrets never reach it."""

from __future__ import annotations

import io
import json
import logging

from shared import logs


def test_structlog_and_stdlib_lines_are_json_with_bound_context():
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    logs.bind(task_id="t-1", cluster="production", app="web", revision="abc", stage="apply")
    logs.get_logger("fleetsync.test").info("applied", objects=4)
    logging.getLogger("celery.worker").warning("a line from a library")
    logs.clear()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["event"] == "applied" and lines[0]["objects"] == 4
    for line in lines:
        assert {"task_id", "cluster", "app", "revision", "stage", "level", "timestamp"} <= set(line)
    assert lines[1]["logger"] == "celery.worker"


def test_values_of_secret_looking_keys_are_masked():
    out = io.StringIO()
    logs.configure("INFO", stream=out)
    logs.get_logger("fleetsync.test").info("fetch", password="hunter2", git_token="t0k3n",
                                            redis_password="pw", url="https://git.example.com/x.git")
    text = out.getvalue()
    assert "hunter2" not in text and "t0k3n" not in text and '"pw"' not in text
    assert json.loads(text)["password"] == "***"
