"""Task events sent in batches: one PUBLISH for every task event of a short window.

A worker that sends task events (Flower's rows are made of them) buffers them when
it runs its event loop (prefork), and Celery's consumer flushes that buffer on the
loop's next turn: a task's ``task-received``, ``task-started`` and
``task-succeeded`` mostly went out as three PUBLISH commands, three of the few tens
a cold unit costs Redis. This consumer (``worker_consumer``) flushes at most every
``FLUSH_AFTER`` seconds instead, so one PUBLISH (``task.multi``, a list of events,
which Flower reads like any other) carries every event of that window, of every
task the worker ran in it. Celery's own limit still holds: a buffer of 24 events is
sent at once. Flower sees an event up to ``FLUSH_AFTER`` late, never out of order.

What is buffered when the worker stops is sent before the consumer shuts down.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer

FLUSH_AFTER = 0.1       # seconds an event may wait for others to share its PUBLISH


class BatchingConsumer(Consumer):
    """Celery's consumer, flushing its buffered task events at most every
    ``FLUSH_AFTER`` seconds (one timer entry for any number of events)."""

    _flush_pending = False

    def on_send_event_buffered(self) -> None:
        if not self.hub:
            return super().on_send_event_buffered()
        if not self._flush_pending:
            self._flush_pending = True
            self.hub.call_later(FLUSH_AFTER, self._flush_batch)
        return None

    def _flush_batch(self) -> None:
        self._flush_pending = False
        self._flush_events()

    def shutdown(self) -> Any:
        self._flush_pending = False
        try:
            self._flush_events()
        except Exception:       # the broker is gone: Celery's shutdown goes on regardless
            pass
        return super().shutdown()
