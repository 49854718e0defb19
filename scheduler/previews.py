"""Start a preview: record it in Redis and enqueue ``fleetsync.preview`` on the workers.

The CLI (``fleetsync preview``), the server's pull-request webhooks and
``POST /api/v1/previews`` all start a preview here. The record is created first
(``shared.state.previews``), then the task is sent by name with the preview id,
the source and the ref only: the workers read everything else from the record,
so no argument carries a secret, and a task that names an unknown preview does
nothing. The workers fan the preview out per cluster with signed internal tasks
(``fleetsync.preview_cluster``, ``workers/sealing.py``), which only they can send.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from shared import tasks_api
from shared.celery_app import send
from shared.errors import FleetsyncError, TransientError
from shared.refnames import ref_name_problem
from shared.state import previews

_SHA = re.compile(r"[0-9a-f]{7,40}")
SPEC_BYTES = 1024 * 1024         # as the spec loader's own limit
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


class PreviewRequestError(FleetsyncError):
    """A preview asked for with a source, ref or revision that cannot be previewed."""


def ref_problem(ref: str) -> str | None:
    """Why ``ref`` (a branch, a tag or a commit SHA) cannot be previewed, or None."""
    if _SHA.fullmatch(ref):
        return None
    return ref_name_problem("branch", ref)


def check(source: str, ref: str, revision: str, base: str) -> None:
    """Refuse, naming the field, what no fetch could follow (hostile input from HTTP too)."""
    if not _NAME.fullmatch(source or ""):
        raise PreviewRequestError(f"source: {source!r} is not a source name")
    if not ref and not revision:
        raise PreviewRequestError("give the ref (branch, tag or SHA) or the revision to preview")
    if revision and not _SHA.fullmatch(revision):
        raise PreviewRequestError(f"revision: {revision!r} is not a commit SHA (7 to 40 hex digits)")
    for field, value in (("ref", ref), ("base", base)):
        problem = ref_problem(value) if value else None
        if problem:
            raise PreviewRequestError(f"{field}: {problem}")


def start(app: Any, redis_client: Any, *, source: str, ref: str = "", revision: str = "",
          base: str = "", apps: Sequence[str] = (), selector: dict | None = None,
          requested_by: str = "", origin: dict | None = None) -> str:
    """Create the preview's record and enqueue it; return the preview id.

    ``ref`` is followed as a branch, tag or SHA; ``revision`` pins the candidate commit
    (the ref is then only its label). ``base`` defaults to what the source applies now.
    A broker that refuses the task marks the preview ``failed`` and raises
    ``TransientError``."""
    return start_with_spec(app, redis_client, source=source, ref=ref, revision=revision,
                           base=base, apps=apps, selector=selector,
                           requested_by=requested_by, origin=origin)


def start_with_spec(app: Any, redis_client: Any, *, source: str, ref: str = "",
                    revision: str = "", base: str = "", apps: Sequence[str] = (),
                    selector: dict | None = None, requested_by: str = "",
                    origin: dict | None = None, spec: str = "") -> str:
    """``start``, with a candidate fleet spec (its text): the units it adds or drops by
    targeting are previewed ``added`` and ``removed`` (``workers/run/previewing.py``)."""
    check(source, ref, revision, base)
    if len(spec.encode()) > SPEC_BYTES:
        raise PreviewRequestError(f"spec: over {SPEC_BYTES} bytes, the fleet spec's limit")
    label = ref or revision
    meta = previews.create(redis_client, source=source, ref=label, base=base, apps=apps,
                           selector=selector, requested_by=requested_by, origin=origin)
    pid = meta["id"]
    if revision or spec:
        previews.update(redis_client, pid, **({"revision": revision} if revision else {}),
                        **({"spec": spec} if spec else {}))
    try:
        send(app, tasks_api.PREVIEW, [pid, source, label], {})
    except TransientError as exc:
        previews.update(redis_client, pid, state="failed", message=f"not enqueued: {exc}")
        raise
    return pid
