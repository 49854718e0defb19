"""Links into Flower's task pages, for the CLI's status and the server's JSON API alike.

Both sides sit above this module, so neither imports the other for it.
"""

from __future__ import annotations


def task_url(flower_url: str | None, task_id: str) -> str:
    """Where Flower shows task ``task_id``, or "" without a Flower URL or a task."""
    return f"{flower_url.rstrip('/')}/task/{task_id}" if flower_url and task_id else ""
