"""What a stage of a run is called with, what it sends, and what it answers: ``Call``, ``Send``,
``Next``. Plain values shared by the stages (``workers/run/runner.py`` and its follow-ups) and the
Celery tasks that carry them out (``workers/tasks.py``), so neither imports the other's logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared import tasks_api
from shared.protocol import Trigger
from shared.state import keys


@dataclass(frozen=True)
class Call:
    """One stage of one run, as its task was called."""

    app: str
    cluster: str
    run_id: str
    trigger: str = Trigger.BEAT.value
    requested_at: float = 0.0
    revision: str = ""
    render_key: str = ""
    task_id: str = ""
    attempt: int = 0                # transient failures so far (waits do not count)
    waited: float = 0.0             # seconds spent waiting for dependencies
    owner: str = ""                 # the lock owner of this stage's previous attempt, when
                                    # Redis failed before it could release the lock
    tries: int = 0                  # the run's try this message is for (its retries so far)

    @property
    def unit(self) -> str:
        return keys.unit_id(self.app, self.cluster)

    def stage_kwargs(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "trigger": self.trigger,
                "requested_at": self.requested_at, "attempt": self.attempt,
                "waited": self.waited, **({"tries": self.tries} if self.tries else {})}


@dataclass(frozen=True)
class Send:
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    countdown: float = 0.0


@dataclass(frozen=True)
class Next:
    result: dict[str, Any]
    send: tuple[Send, ...] = ()
    retry_in: float | None = None           # retry this stage's task after that many seconds
    retry_kwargs: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None      # raise it after sending (the task shows failed)


def call_of(name: str, args: list[Any], kwargs: dict[str, Any], task_id: str = "") -> Call:
    """The ``Call`` a render or apply task was sent with."""
    app, cluster, third = (list(args) + ["", "", ""])[:3]
    is_apply = name == tasks_api.APPLY
    return Call(app, cluster, kwargs.get("run_id") or task_id,
                kwargs.get("trigger") or Trigger.BEAT.value,
                float(kwargs.get("requested_at") or 0),
                kwargs.get("revision") or ("" if is_apply else third),
                third if is_apply else "", task_id, int(kwargs.get("attempt") or 0),
                float(kwargs.get("waited") or 0), str(kwargs.get("owner") or ""),
                int(kwargs.get("tries") or 0))


def render_send(call: Call) -> Send:
    return Send(tasks_api.RENDER, [call.app, call.cluster, call.revision], call.stage_kwargs())


def apply_send(call: Call) -> Send:
    return Send(tasks_api.APPLY, [call.app, call.cluster, call.render_key],
                {**call.stage_kwargs(), "revision": call.revision})
