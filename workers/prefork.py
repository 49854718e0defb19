"""Keep a prefork worker's memory shared: load what the pool needs once, before it forks.

Celery's prefork pool forks its processes from the worker's main process. A page
the main process holds at the fork is shared copy-on-write until either side
writes to it, and CPython writes to an object whenever its cycle collector
visits it. Celery runs ``gc.collect()`` in the main process before each fork, and
every full collection in a pool process visits everything again, so each pool
process ended up with a private copy of most of the code it had inherited
(``bench/worker_memory_bench.py`` shows the private, USS, column).

Two steps keep those pages shared:

- ``worker_init`` (main process, after the task modules are imported and before
  the pool starts) imports what the stages otherwise import on a pool process's
  first task (``PRELOAD``), so that code is loaded once, not once per process,
  and reads the fleet spec into the worker's context (``warm``) for the same reason;
- ``worker_before_create_process`` (main process, just before each fork) collects
  garbage and then moves every surviving object to the collector's permanent
  generation (``gc.freeze``), which neither the main process nor the pool visit
  again. What is frozen there is the main process's long-lived state (modules,
  tasks, the consumer); a pool process's own objects are collected as usual.

Both are Celery signal handlers, so nothing here runs outside a worker
(``fleetsync sync --local`` and code that imports the tasks are unaffected), and
the freeze only where a pool forks (prefork, not ``solo`` or threads).
"""

from __future__ import annotations

import gc
import importlib
from typing import Any

from celery import signals

from shared.errors import FleetsyncError
from workers.context import process_context

# Imported inside functions by the stages (to keep ``render --local`` and the pure
# modules light), or by Celery and billiard on first use in a pool process.
PRELOAD = (
    "shared.spec.load",
    "workers.apply.engine",
    "workers.apply.execute",
    "workers.apply.removal",
    "workers.apply.discovery",
    "workers.apply.snapshot",
    "workers.render.helm",
    "workers.render.engine",
    "celery.backends.redis",
)
# Loaded only when installed: billiard parses a C declaration with cffi in every new
# pool process (``set_pdeathsig``) when cffi is importable.
OPTIONAL = ("cffi.cparser",)


def preload() -> None:
    """Import ``PRELOAD`` (and whichever of ``OPTIONAL`` is installed)."""
    for name in PRELOAD:
        importlib.import_module(name)
    for name in OPTIONAL:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def freeze() -> None:
    """Collect garbage, then keep the collector off everything that is left."""
    gc.collect()
    gc.freeze()


def warm(app: Any) -> None:
    """The worker's context, with the fleet spec read and its key loaded, made in the
    main process: every pool process inherits them rather than parsing a spec of
    thousands of applications on its first task (the spec is still read again when
    its file changes). What cannot be read now is left for the pool to report. The
    result backend is made here too: Celery makes it on a thread's first send, and
    finding its class scans every installed package's entry points (tens of ms each
    time, in every pool process). It connects to nothing until it is used."""
    try:
        app.backend
    except Exception:                   # noqa: BLE001 - made again, and reported, by a send
        pass
    try:
        ctx = process_context()
        ctx.fleet()
        ctx.sealer
    except (FleetsyncError, OSError, ValueError):
        pass


@signals.worker_init.connect
def _preload(sender: Any = None, **_: Any) -> None:
    preload()
    warm(sender.app)


@signals.worker_before_create_process.connect
def _freeze(**_: Any) -> None:
    freeze()
