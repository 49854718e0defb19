"""The error types of fleetsync, and which of them a retry can cure.

Library exceptions are wrapped at the adapter boundary (git, kubernetes, redis)
into these types with ``raise ... from``. ``TransientError`` is retried by Celery
with backoff; ``PermanentError`` records the sync unit as ``Failed`` and waits
for the revision or the spec to change.
"""

from __future__ import annotations


class FleetsyncError(Exception):
    """Base of every error fleetsync raises on purpose."""

    reason = "Error"

    def __init__(self, message: str, *, unit: str | None = None, revision: str | None = None,
                 obj: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.unit = unit
        self.revision = revision
        self.obj = obj
        self.drifted: tuple[str, ...] = ()     # objects whose drift this error left uncorrected

    def __str__(self) -> str:
        where = []
        if self.unit:
            where.append(self.unit)
        if self.revision:
            where.append(f"@{self.revision[:12]}")
        if self.obj:
            where.append(f"[{self.obj}]")
        prefix = " ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def __repr__(self) -> str:
        """What Celery (and so Flower) shows of a failed task: with its unit and revision."""
        return f"{type(self).__name__}({str(self)!r})"


class PermanentError(FleetsyncError):
    """Retrying will not help until the input (revision, spec) changes."""

    reason = "Permanent"


class TransientError(FleetsyncError):
    """Network, 5xx, 429, timeouts, a busy lock: try again later."""

    reason = "Transient"

    def __init__(self, message: str, *, delay: float | None = None, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.delay = delay


class SpecError(PermanentError):
    """The fleet spec is invalid; ``problems`` lists every ``file:line: field: message``."""

    reason = "SpecInvalid"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class SourceError(PermanentError):
    """A ref that does not exist, authentication refused, an unreachable URL that will stay so."""

    reason = "SourceFailed"


class RenderError(PermanentError):
    """The source at this revision does not render: bad YAML, kustomize error, undefined var."""

    reason = "RenderFailed"


class ApplyError(PermanentError):
    """The API server refused the objects (invalid, forbidden, conflicting ownership)."""

    reason = "ApplyFailed"


class OwnershipError(ApplyError):
    """An object exists that fleetsync did not apply, or that another application owns."""

    reason = "OwnershipConflict"


class HealthError(PermanentError):
    """Objects did not become healthy within the application's timeout."""

    reason = "HealthCheckFailed"




class StaleInventory(TransientError):
    """The in-cluster inventory moved on: our lock expired and another worker wrote it."""

    reason = "StaleInventory"
    stored_token = 0                 # the token the inventory holds


class LockLost(TransientError):
    """The unit's lock (or its fencing token) is no longer this run's: no more writes."""

    reason = "LockLost"
