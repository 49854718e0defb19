"""What image automation did to each Git source, kept in Redis for the CLI and dashboard.

Per source with ``imageUpdates``, the last pass of ``fleetsync.scan_images``: the
commit it pushed (or none), the fields it changed, the problems it met, the policies
it left out (no record yet, or an error) and when. Per source and revision, the
setter markers of the tree (``file``, ``line``, ``policy``, ``value``), so that
``fleetsync images status`` can say what Git has at the source's head and which tag
each cluster runs: a unit's applied revision names the markers it applied. Both are
caches: the next pass writes them again. Nothing here is a secret (tags, file paths,
commit ids); credentials never reach these records.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from shared.state import keys

MARKERS_TTL = 7 * 24 * 3600     # seconds a revision's markers are kept (re-read when asked)
MAX_MARKERS = 500               # per tree: a record stays small whatever the repository holds


def record_pass(r: Any, source: str, record: dict[str, Any]) -> None:
    r.set(keys.image_updates(source), json.dumps(record, sort_keys=True))


def load_pass(r: Any, source: str) -> dict[str, Any] | None:
    raw = r.get(keys.image_updates(source))
    return _json(raw)


def record_markers(r: Any, source: str, revision: str, markers: list[dict[str, Any]]) -> None:
    r.set(keys.image_markers(source, revision), json.dumps(markers[:MAX_MARKERS]),
          ex=MARKERS_TTL)


def load_markers(r: Any, source: str, revision: str) -> list[dict[str, Any]] | None:
    found = _json(r.get(keys.image_markers(source, revision)))
    return found if isinstance(found, list) else None


def load_markers_many(r: Any, source: str, revisions: Iterable[str]
                      ) -> dict[str, list[dict[str, Any]]]:
    wanted = sorted({rev for rev in revisions if rev})
    if not wanted:
        return {}
    raws = r.mget([keys.image_markers(source, rev) for rev in wanted])
    out = {}
    for rev, raw in zip(wanted, raws):
        found = _json(raw)
        if isinstance(found, list):
            out[rev] = found
    return out


def _json(raw: Any) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return None
