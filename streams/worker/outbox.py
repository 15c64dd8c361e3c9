"""Output events of a batch, sent at once and acknowledged before the state is written.

The pipeline adds every output (segment change, churn risk, dead letter)
while it processes a batch and hands them to the producer as soon as the
batch is processed (:meth:`Outbox.send`); the commit then waits for the
broker's acknowledgements (:meth:`Outbox.flush`).
The pipeline writes the customers' new state only afterwards, so a crash can
repeat an output (same deterministic ``event_id``) but never lose one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Outbox", "OutputRecord", "OutputTopic", "ProducerTopic"]


class OutputTopic(Protocol):
    """Anything with ``send(key=, value=)``; may return a delivery future."""

    async def send(self, *, key: bytes | None, value: bytes, **options: Any) -> Any: ...


@dataclass
class ProducerTopic:
    """An output topic sent through the app's producer, skipping Faust's per-send
    bookkeeping: ``send`` returns as soon as the record is queued, with a future
    of its acknowledgement."""

    app: Any
    name: str

    async def send(
        self,
        *,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        return await self.app.producer.send(
            self.name, key, value, partition=partition, timestamp=timestamp, headers=headers
        )


@dataclass(eq=False)
class OutputRecord:
    """One queued output, and what became of it once handed to the producer."""

    output: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (compacted topics)
    latency_kind: str | None = None
    kafka_ts_ms: float | None = None
    sent_at: float | None = None  # wall clock when handed to the producer
    ack: Any = None  # the producer's delivery future (None: not sent, or no future)
    # partition, timestamp, headers, when set (streams.worker.repartition's forwards)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outbox:
    """Outputs of a batch: sent as soon as the batch is processed, acknowledged at commit.

    :meth:`send` hands queued records to the producer without waiting, so
    downstream consumers see them while the batch waits for its commit;
    :meth:`flush` sends what is left and waits for every acknowledgement.

    Examples
    --------
    >>> import asyncio
    >>> class Recorder:
    ...     sent = []
    ...     async def send(self, *, key, value):
    ...         self.sent.append((key, value))
    >>> box = Outbox({"segment-changes": Recorder()})
    >>> box.add("segment-changes", b"c1", b"{}")
    >>> len(box)
    1
    >>> asyncio.run(box.send()); Recorder.sent
    [(b'c1', b'{}')]
    >>> [(r.output, r.latency_kind) for r in asyncio.run(box.flush())]  # not sent again
    [('segment-changes', None)]
    >>> Recorder.sent, len(box)
    ([(b'c1', b'{}')], 0)
    """

    topics: dict[str, Any]
    _records: list[OutputRecord] = field(default_factory=list)

    def add(
        self,
        output: str,
        key: bytes | None,
        value: bytes | None,
        latency_kind: str | None = None,
        kafka_ts_ms: float | None = None,
        **options: Any,
    ) -> None:
        """Queue one record of the logical output topic ``output``.

        ``latency_kind`` and ``kafka_ts_ms`` (the input's Kafka timestamp) let the
        caller observe event-to-emit latency when the record is acknowledged.
        ``options`` (``partition``, ``timestamp``, ``headers``) go to the topic's
        ``send`` as they are.
        """
        record = OutputRecord(output, key, value, latency_kind, kafka_ts_ms)
        if options:
            record.options = options
        self._records.append(record)

    def __len__(self) -> int:
        return len(self._records)

    def extend(self, other: Outbox) -> None:
        """Queue everything ``other`` holds (the same records: ``other`` keeps them)."""
        self._records.extend(other._records)

    def clear(self) -> None:
        """Forget everything queued (after it was sent elsewhere)."""
        self._records.clear()

    async def send(self) -> None:
        """Hand every record not sent yet to the producer; do not wait for acks."""
        for record in self._records:
            if record.sent_at is None:
                record.ack = await self.topics[record.output].send(
                    key=record.key, value=record.value, **record.options
                )
                record.sent_at = time.time()

    async def flush(self) -> list[OutputRecord]:
        """Send what is not sent yet and wait for every acknowledgement.

        Returns the records. On an error every record stays queued and is sent
        again by the next call (a record may reach the topic twice; its
        ``event_id`` is deterministic).
        """
        records = list(self._records)
        try:
            await self.send()
            await asyncio.gather(*(r.ack for r in records if r.ack is not None))
        except BaseException:
            for record in records:
                record.sent_at, record.ack = None, None
            raise
        del self._records[: len(records)]  # nothing is added while a batch commits
        return records
