"""kombu's Redis transport with its bookkeeping of delivered messages in plain pipelines.

A worker's kombu keeps each message it took from a queue in the ``unacked`` hash
and ``unacked_index`` sorted set until the task acknowledges it: two commands when
it is delivered and two when it is acknowledged, each pair sent as a transaction
(``MULTI`` ... ``EXEC``), so four commands more per task than the work needs.

The transaction buys nothing here. The pair is still sent in one round trip, in
order; what a transaction adds is that a connection lost in the middle applies
neither command rather than the first one. kombu already copes with either half
alone: an index entry without its message is skipped and removed when the
visibility timeout restores messages, and a message without an index entry (an
acknowledgement cut short) is never delivered again, since restoring reads the
index. Every other part of the transport (publishing, the restore, which runs
under ``WATCH``, Sentinel) is kombu's own, unchanged.

The worker app names these classes for its ``redis``, ``rediss`` and ``sentinel``
URLs (``use``); senders (beat, the CLI, the server) keep kombu's.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from kombu import transport as transports
from kombu.transport import redis as kombu_redis


class QoS(kombu_redis.QoS):
    @contextmanager
    def pipe_or_acquire(self, pipe: Any = None, client: Any = None) -> Iterator[Any]:
        if pipe:
            yield pipe
        else:
            with self.channel.conn_or_acquire(client) as client:
                yield client.pipeline(transaction=False)


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(kombu_redis.SentinelChannel):
    QoS = QoS


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def use() -> None:
    """This process's Redis URLs get these transports (the worker's, before it connects)."""
    transports.TRANSPORT_ALIASES.update({
        "redis": f"{__name__}:Transport", "rediss": f"{__name__}:Transport",
        "sentinel": f"{__name__}:SentinelTransport"})
