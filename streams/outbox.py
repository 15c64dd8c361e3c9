"""Output events of a batch, sent together and acknowledged before the state is written.

The pipeline adds every output (segment change, churn risk, privacy
confirmation, dead letter) while it processes a batch; :meth:`Outbox.flush`
hands them all to the producer and waits for the broker's acknowledgements.
The pipeline writes the customers' new state only afterwards, so a crash can
repeat an output (same deterministic ``event_id``) but never lose one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Outbox", "OutputTopic", "ProducerTopic"]


class OutputTopic(Protocol):
    """Anything with ``send(key=, value=)``; may return a delivery future."""

    async def send(self, *, key: bytes | None, value: bytes) -> Any: ...


@dataclass
class ProducerTopic:
    """An output topic sent through the app's producer, skipping Faust's per-send
    bookkeeping: ``send`` returns as soon as the record is queued, with a future
    of its acknowledgement."""

    app: Any
    name: str

    async def send(self, *, key: bytes | None, value: bytes) -> Any:
        return await self.app.producer.send(
            self.name, key, value, partition=None, timestamp=None, headers=None
        )


@dataclass
class Outbox:
    """Outputs waiting to be sent, with what to observe once they are acknowledged.

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
    >>> asyncio.run(box.flush())
    [('segment-changes', None, None)]
    >>> Recorder.sent, len(box)
    ([(b'c1', b'{}')], 0)
    """

    topics: dict[str, Any]
    _items: list[tuple[str, bytes | None, bytes, str | None, float | None]] = field(
        default_factory=list
    )

    def add(
        self,
        output: str,
        key: bytes | None,
        value: bytes,
        latency_kind: str | None = None,
        kafka_ts_ms: float | None = None,
    ) -> None:
        """Queue one record of the logical output topic ``output``.

        ``latency_kind`` and ``kafka_ts_ms`` (the input's Kafka timestamp) let the
        caller observe event-to-emit latency when the record is acknowledged.
        """
        self._items.append((output, key, value, latency_kind, kafka_ts_ms))

    def __len__(self) -> int:
        return len(self._items)

    def extend(self, other: Outbox) -> None:
        """Queue a copy of everything ``other`` holds (``other`` keeps it)."""
        self._items.extend(other._items)

    def clear(self) -> None:
        """Forget everything queued (after it was sent elsewhere)."""
        self._items.clear()

    async def flush(self) -> list[tuple[str, str | None, float | None]]:
        """Send everything queued and wait for the acknowledgements.

        Returns ``(output, latency_kind, kafka_ts_ms)`` per record sent. On an
        error the records stay queued for the next call (they may be sent twice;
        their ids are deterministic).
        """
        if not self._items:
            return []
        items, self._items = self._items, []
        try:
            futures = []
            for output, key, value, _, _ in items:
                future = await self.topics[output].send(key=key, value=value)
                if future is not None:
                    futures.append(future)
            await asyncio.gather(*futures)
        except BaseException:
            self._items = items + self._items
            raise
        return [(output, kind, ts) for output, _, _, kind, ts in items]
