"""One thread pool per process for the engine's concurrent reads, dry-runs and writes.

Starting threads costs more than a no-op reconcile's reads themselves, so the
pool lives as long as the process (a Celery pool process serves many units).
A child forked from a process that had a pool starts without one.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

SIZE = 8
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def shared() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(SIZE, thread_name_prefix="fleetsync-kube")
        return _pool


def _forget() -> None:
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget)
