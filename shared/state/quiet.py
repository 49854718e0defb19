"""The status of units a cluster pass found quiet: refreshed, never written over a run.

``workers/run/sweep.py`` judges a cluster's units from one snapshot; a unit with nothing
to do gets no run, only its status refreshed (synced and succeeded now, every object
unchanged). The refresh is a compare-and-set of its own, beside the protocol's
(``shared/state/runs.py``): it holds only while no run of the unit is queued, parked or
running, and the status is still the one the pass read (same run, Ready at that
revision), so a run that began meanwhile always wins.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from shared.state import keys
from shared.protocol import Phase
from shared.state.status import UnitStatus

# KEYS 1-4 the unit's protocol keys, KEYS 5 its status; three commands in all.
_REFRESH = """
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3], KEYS[4]) > 0 then return 0 end
local now = redis.call('HMGET', KEYS[5], 'run_id', 'phase', 'revision')
if now[1] ~= ARGV[1] or now[2] ~= ARGV[2] or now[3] ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[5], 'last_synced_at', ARGV[4], 'last_success_at', ARGV[4],
           'message', ARGV[5], 'counts', ARGV[6])
return 1
"""


class QuietUnits:
    """Refreshes quiet units' status on a decoded Redis client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._refresh = client.register_script(_REFRESH)

    def refresh(self, quiet: Sequence[tuple[UnitStatus, str, dict[str, int]]],
                now: str) -> list[bool]:
        """Each (status as read, message, counts): synced and succeeded ``now``, if it
        still may be; one round trip for all. True per unit where it was written."""
        if not quiet:
            return []
        pipe = self.client.pipeline(transaction=False)
        for status, message, counts in quiet:
            unit = keys.unit_id(status.app, status.cluster)
            self._refresh(keys=[*keys.protocol(unit), keys.status(unit)],
                          args=[status.run_id, Phase.READY.value, status.revision, now,
                                message, json.dumps(counts)], client=pipe)
        return [int(result) == 1 for result in pipe.execute()]
