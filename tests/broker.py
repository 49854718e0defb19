"""What the broker holds right now, read from Redis as kombu stores it: every
fleetsync task message waiting in a queue or delivered and not yet acknowledged
(running, or held by a worker until its retry countdown), by sync unit."""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any, Iterator

from shared.tasks_api import STAGE_QUEUES, TASKS


def _messages(client: Any) -> Iterator[dict]:
    for queue in STAGE_QUEUES:
        for raw in client.lrange(queue, 0, -1):
            yield json.loads(raw)
    for raw in client.hvals("unacked"):
        yield json.loads(raw)[0]


def _call(message: dict) -> tuple[str, list, dict]:
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, kwargs, _ = json.loads(body)
    return message["headers"]["task"], args, kwargs


def stage_tasks_by_unit(client: Any) -> Counter:
    """How many render/apply messages each unit (``cluster/app``) has in the broker."""
    found: Counter = Counter()
    for message in _messages(client):
        name, args, kwargs = _call(message)
        if name in ("fleetsync.render", "fleetsync.apply"):
            named = TASKS[name].named(args, kwargs)
            found[f"{named['cluster']}/{named['app']}"] += 1
    return found
