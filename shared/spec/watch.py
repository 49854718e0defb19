"""The one watcher of the fleet spec file: re-read when it changes, never more.

Workers, beat and the server all follow the spec file while they run: a
cluster or application added to it is picked up without a restart. The file is
looked at (one ``stat``) at most every ``check_every`` seconds and parsed only
when its modification time or size changed.

Workers want the spec as it is (``load``: an invalid file is an error, nothing
is applied from it); beat wants the last good one (``poll``: an invalid file
keeps the schedule that was running, and the problems are reported once).
"""

from __future__ import annotations

import os
import time
from typing import Callable

from shared.errors import SpecError
from shared.spec.model import Fleet
from shared.spec.load import load_fleet


class SpecWatcher:
    def __init__(self, path: str | None, *, check_every: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.check_every = check_every
        self.clock = clock
        self._checked = float("-inf")
        self._stamp: tuple[float, int] | None = None
        self._fleet: Fleet | None = None
        self._error: SpecError | None = None

    def load(self) -> Fleet:
        """The spec as the file says now; ``SpecError`` when it does not validate."""
        self._refresh()
        if self._error is not None:
            raise self._error
        if self._fleet is None:
            raise SpecError([f"{self.path}: the fleet spec could not be read yet"])
        return self._fleet

    def poll(self, force: bool = False) -> tuple[Fleet | None, bool, SpecError | None]:
        """``(last good spec, changed since the last poll, error of a new bad file)``;
        ``force`` looks at the file now, even within ``check_every``."""
        before = self._fleet
        error = self._refresh(force)
        return self._fleet, self._fleet is not before, error

    def _refresh(self, force: bool = False) -> SpecError | None:
        """Re-read when due and changed; the new error, if this read found one."""
        if not self.path:
            self._error = SpecError(["no fleet spec: set FLEETSYNC_FLEET or pass -f FILE"])
            return self._error
        now = self.clock()
        if not force and now - self._checked < self.check_every and (self._fleet or self._error):
            return None
        self._checked = now
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._error = SpecError([f"{self.path}: cannot read the fleet spec: {exc.strerror}"])
            return self._error
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return None
        try:
            self._fleet, self._error = load_fleet(self.path), None
        except SpecError as exc:
            self._error = exc
            self._stamp = stamp
            return exc
        self._stamp = stamp          # only once read: an unexpected error is read again next time
        return None
