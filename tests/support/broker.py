"""What the broker holds right now, read from Redis as kombu stores it: every
fleetsync task message waiting in a queue or delivered and not yet acknowledged
(running, or held by a worker until its retry countdown), by sync unit and run."""

from __future__ import annotations

import base64
import json
from typing import Any, Iterator

from shared.state import keys
from shared.tasks_api import STAGE_QUEUES, TASKS, apply_queue, unacked_keys


def _messages(client: Any, clusters: tuple[str, ...] = ()) -> Iterator[dict]:
    """With ``clusters`` (pull mode), their apply queues and their workers' unacked too."""
    queues = [*STAGE_QUEUES, *(apply_queue(c, True) for c in clusters)]
    for queue in queues:
        for raw in client.lrange(queue, 0, -1):
            yield json.loads(raw)
    for unacked in ["unacked", *(unacked_keys(c)["unacked_key"] for c in clusters)]:
        for raw in client.hvals(unacked):
            yield json.loads(raw)[0]


def _call(message: dict) -> tuple[str, list, dict]:
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, kwargs, _ = json.loads(body)
    return message["headers"]["task"], args, kwargs


def waiting_runs_by_unit(client: Any) -> dict[str, set[str]]:
    """The runs of each unit that have a message in the broker and wait to run (queued or
    retrying): the unit's live task chains. A message of a run that is running (the
    next stage, or a retry published before the attempt is acknowledged) or that has
    ended (dropped when delivered) is no chain of its own."""
    found: dict[str, set[str]] = {}
    for unit, run_id in _stage_calls(client):
        state = client.hget(keys.run(unit, run_id), "state")
        if isinstance(state, bytes):
            state = state.decode()
        if state in ("queued", "retrying"):
            found.setdefault(unit, set()).add(run_id)
    return found


def _stage_calls(client: Any) -> Iterator[tuple[str, str]]:
    for message in _messages(client):
        name, args, kwargs = _call(message)
        if name in ("fleetsync.render", "fleetsync.apply"):
            named = TASKS[name].named(args, kwargs)
            yield f"{named['cluster']}/{named['app']}", kwargs.get("run_id", "")
