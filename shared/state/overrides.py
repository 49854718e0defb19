"""Manual syncs let through a closed change window, kept in Redis until they are used.

``fleetsync sync APP --reason TEXT`` (or the server's API) asks a worker to sync a
unit that a window holds. When every window holding it says ``manualSync: true``,
the worker records a grant here: the revision the sync lets through, who asked and
why. The stages after it (the apply, a later tick while the unit is still held) see
the grant and apply that revision; any newer revision is held again. A grant lives
``GRANT_TTL`` seconds at most, and like all of Redis it may be flushed: the unit is
then held as before, nothing worse.

``by`` and ``reason`` come from outside (a CLI user, a dashboard form): they are cut
to ``MAX_BY`` and ``MAX_REASON`` characters and stripped of control characters
(``shared.audit.clean``) before anything stores or logs them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from shared.audit import clean
from shared.state import keys

GRANT_TTL = 3600
MAX_BY = 64
MAX_REASON = 300


@dataclass(frozen=True)
class Override:
    """A manual sync through a window: the revision it lets through, by whom, why."""

    revision: str
    by: str
    reason: str
    window: str
    at: str


class Overrides:
    """Window override grants on one decoded Redis client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def grant(self, app: str, cluster: str, override: Override, ttl: int = GRANT_TTL) -> None:
        self.client.set(keys.window_override(keys.unit_id(app, cluster)),
                        json.dumps(asdict(override), sort_keys=True), ex=ttl)

    def granted(self, app: str, cluster: str) -> Override | None:
        raw = self.client.get(keys.window_override(keys.unit_id(app, cluster)))
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return Override(**{k: str(data[k]) for k in ("revision", "by", "reason", "window",
                                                           "at")})
        except (ValueError, KeyError, TypeError):
            return None
