"""The one place that turns health verdicts into a unit's phase.

The apply engine (``workers/apply/health.py``) says, per object, Healthy,
Progressing, Degraded, Suspended or Unknown with a message and the rule that
decided. A unit's phase follows from those verdicts by the rules below, and the
three places that settle a phase (the run's end, the health follow-up and the
cluster pass) all ask here:

- nothing blocking: ``Ready``;
- the application does not wait for health (``wait: false``): ``Ready``, saying what
  was not counted;
- one object Degraded: ``Degraded`` at once (waiting will not cure it);
- the unit's ``timeout`` passed: ``Degraded``, naming what is still not healthy;
- else ``Progressing``, waiting for the named objects.

Objects are named Degraded first, then by reference, the first ``SHOWN`` of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from shared.protocol import Phase

DEGRADED = "Degraded"
SHOWN = 2                                    # unhealthy objects named in a status message

Problem = tuple[Any, str, str]               # (object reference, verdict, message)


@dataclass(frozen=True)
class Settled:
    """A phase decided from health, with its message, reason and what to look at again."""

    phase: Phase
    message: str
    reason: str = ""
    pending: tuple[str, ...] = ()            # objects still Progressing (their ids)


def problem_lines(problems: Iterable[Problem]) -> list[str]:
    """``Deployment/web/web-app: Progressing: 2/3 replicas available``, Degraded first."""
    order = sorted(problems, key=lambda p: (p[1] != DEGRADED, p[0]))
    return [f"{ref}: {status}: {message}" for ref, status, message in order]


def short(lines: list[str]) -> str:
    more = len(lines) - SHOWN
    return "; ".join(lines[:SHOWN]) + (f" (and {more} more)" if more > 0 else "")


def decide(problems: Iterable[Problem], applied: str, *, wait: bool, timed_out: bool,
           timeout: float, healthy: str | None = None) -> Settled:
    """The phase of a unit whose objects were applied (``applied`` says how) and whose
    blocking verdicts are ``problems``. ``healthy`` is the message when none is left
    (``applied`` itself unless given)."""
    problems = list(problems)
    if not problems:
        return Settled(Phase.READY, applied if healthy is None else healthy)
    lines = problem_lines(problems)
    if not wait:
        return Settled(Phase.READY, f"{applied}; health not counted (wait: false): "
                                    f"{short(lines)}")
    if any(status == DEGRADED for _, status, _ in problems):
        return Settled(Phase.DEGRADED, f"{applied}; degraded: {short(lines)}", "Degraded")
    if timed_out:
        return Settled(Phase.DEGRADED, f"{applied}; not healthy after {timeout:g}s: "
                                       f"{short(lines)}", "HealthTimeout")
    return Settled(Phase.PROGRESSING, f"{applied}; waiting for {short(lines)}",
                   "WaitingForHealth", tuple(_id(ref) for ref, _, _ in problems))


def _id(ref: Any) -> str:
    return str(getattr(ref, "id", ref))
