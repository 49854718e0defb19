"""Immutable fields: say which one in a line, or replace the object when the application says ``force``.

Some changes the API server refuses on an existing object: a Job's pod
template, a Service's ``clusterIP``, a Deployment's selector. It answers 422
with ``<field>: Invalid value: <2 KB of the object>: field is immutable``. The
only way to get the new spec live is to delete the object and create it again,
which loses its history (a Job's pods, a Service's address), so it is done only
when the application sets ``force: true`` (Flux's ``force``, Argo CD's
``Replace=true``). Without it the refusal is one line naming the field and the
key that would allow it.

``immutable_fields`` and ``refusal`` are pure; ``replace`` does the two writes:
delete with a ``uid`` precondition (only the object we looked at), wait until it
is gone (an object with finalizers lingers), then server-side apply, which
creates it.
"""

from __future__ import annotations

import re
import time
from typing import Callable

from shared.errors import TransientError
from workers.apply.kube import Invalid, Kube, NotFound, detail

IMMUTABLE = "field is immutable"
_FIELD = re.compile(r"([A-Za-z_][\w-]*(?:\.[\w-]+|\[[^\]\s]*\])*): Invalid value: ")
GONE_POLL = 0.1


def is_immutable(error: BaseException) -> bool:
    """Whether the API server refused an update because a field is immutable."""
    return isinstance(error, Invalid) and IMMUTABLE in detail(error)


def immutable_fields(message: str) -> list[str]:
    """The field paths that a 422 message says are immutable, in the server's order."""
    fields: list[str] = []
    for part in message.split(IMMUTABLE)[:-1]:
        found = _FIELD.findall(part)
        if found and found[-1] not in fields:
            fields.append(found[-1])
    return fields


def refusal(message: str) -> str:
    """One line for an immutable-field refusal: the field(s) and ``force: true``."""
    fields = immutable_fields(message) or ["a field"]
    named = ", ".join(fields)
    verb = "is" if len(fields) == 1 else "are"
    return (f"{named} {verb} immutable and changed in Git; set force: true on the application "
            "to delete and re-create the object")


def replace(kube: Kube, path: str, obj: dict, *, timeout: float,
            write: Callable[[], dict] | None = None) -> dict:
    """Delete the object at ``path`` and apply ``obj`` in its place (or ``write`` it so);
    the new object."""
    live = kube.get_or_none(path)
    if live is not None:
        uid = (live.get("metadata") or {}).get("uid")
        try:
            kube.delete(path, uid=uid)
        except NotFound:
            pass
        wait_gone(kube, path, uid, timeout)
    return write() if write is not None else kube.apply(path, obj)


def wait_gone(kube: Kube, path: str, uid: str | None, timeout: float) -> None:
    """Until no object with ``uid`` is at ``path``; ``TransientError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        live = kube.get_or_none(path)
        if live is None or (live.get("metadata") or {}).get("uid") != uid:
            return
        if time.monotonic() >= deadline:
            finalizers = (live.get("metadata") or {}).get("finalizers") or []
            raise TransientError(f"{path} was deleted to be replaced but is still there after "
                                 f"{timeout:g}s (finalizers: {', '.join(finalizers) or 'none'})")
        time.sleep(GONE_POLL)
