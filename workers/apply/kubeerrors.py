"""The errors of the Kubernetes adapter (``workers.apply.kube``) and how an HTTP
failure becomes one; pure, tested without a server:

    400/422 invalid, 409 conflict, 401/403 refused   -> ApplyError subclasses (permanent)
    500 "failed to create typed patch object"        -> Invalid (an undeclared field)
    404                                              -> NotFound
    429, 5xx, connection errors, timeouts            -> TransientError (delay = Retry-After)

(Which connection error a request met is the adapter's ``unreachable_reason``.)
"""

from __future__ import annotations

import json
from typing import Mapping

from shared.errors import ApplyError, FleetsyncError, TransientError


class KubeError(ApplyError):
    """A permanent refusal by the API server; ``detail`` is the server's own message."""

    def __init__(self, message: str, *, status: int = 0, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or message


class NotFound(KubeError):
    """The object (or its namespace, or its kind) does not exist: 404."""

    reason = "NotFound"


class Conflict(KubeError):
    """409: AlreadyExists, or a resourceVersion / uid precondition that no longer holds."""

    reason = "Conflict"


class Invalid(KubeError):
    """400/422: the API server refused the object as invalid."""

    reason = "Invalid"


class Refused(KubeError):
    """401/403: authentication or authorization refused; retrying will not help."""

    reason = "Forbidden"


class Unavailable(TransientError):
    """429, 5xx, a connection error or a timeout: the API server may answer later.
    ``unreachable`` says why, when it did not answer at all (the cluster is down)."""

    reason = "KubeUnavailable"
    unreachable = ""

    def __init__(self, message: str, *, status: int = 0, detail: str = "",
                 delay: float | None = None) -> None:
        super().__init__(message, delay=delay)
        self.status = status
        self.detail = detail or message


def server_message(body: str | bytes | None) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, or the body itself, shortened."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return ""
    try:
        status = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return body.strip()[:500]


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a ``Retry-After`` header (the API server sends whole seconds)."""
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_PERMANENT: dict[int, type[KubeError]] = {
    404: NotFound, 409: Conflict, 400: Invalid, 422: Invalid, 401: Refused, 403: Refused,
}


# A server-side apply of a field the schema does not declare: the API server answers 500
# (checked with v1.37, whatever fieldValidation says), but retrying cannot help.
UNDECLARED = "failed to create typed patch object"


def classify(status: int, message: str, delay: float | None, what: str) -> FleetsyncError:
    """The fleetsync error for an HTTP failure status (pure: tested without a server)."""
    text = f"{what}: {message or f'HTTP {status}'}"
    if status == 500 and UNDECLARED in message:
        return Invalid(text, status=status, detail=message)
    if status in _PERMANENT:
        return _PERMANENT[status](text, status=status, detail=message)
    if status == 429 or status >= 500 or status == 0:
        return Unavailable(text, status=status, detail=message, delay=delay)
    return KubeError(text, status=status, detail=message)


def detail(error: BaseException) -> str:
    """The API server's message carried by an error from this module (or its text)."""
    return str(getattr(error, "detail", None) or error)
