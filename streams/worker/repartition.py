"""Messages on the wrong partition: rerouted by ``customer_id`` through the repartition topic.

A customer's state lives on one partition of the ``customers`` table: the one
the Java client's default partitioner gives the customer id,
``murmur2(customer_id) % partitions``, where the worker applies every input
message it reads. A producer that does not key by ``customer_id`` (no key at
all), or that keys correctly but places keys with another partitioner
(librdkafka's default ``consistent_random`` is CRC32-based: kcat,
confluent-kafka-python, the Go and Node clients built on librdkafka), puts a
customer's messages on other partitions, where applying them would split the
customer into several records.

So every valid input message is checked (:meth:`Router.reroute`, a cached
lookup per customer id): a key must be absent or equal to ``customer_id`` (a
key naming another customer is a producer bug, dead-lettered as
``key_mismatch``), and the message must be on the customer's partition. One
that is not is *not* applied where it landed: it is forwarded, unchanged, to
the internal ``repartition`` topic, on the customer's partition (key =
``customer_id``, the partition set explicitly), with its origin in headers
(:class:`Origin`). The worker reads the repartition topic as one more input of
the partition: its events take part in the partition's event-time order and
are applied to the one record of the customer. Kafka Streams routes through a
repartition topic the same way.

Delivery (see ``docs/delivery.md``): a forward is an output of the batch that
read the source message, so the source message is acked (and its offset
committed) only once the broker has acknowledged the forward. A crash before
that commit forwards the message again: the repartition topic then holds it
twice, at two offsets. Each customer record remembers, per source topic *and
source partition*, the source offset of the last rerouted message applied
(``"rp"``, :func:`models.customer.source_applied`); a source
topic-partition forwards in offset order, so a copy whose source offset is not
above that watermark is a second forward or a re-delivery of the repartition
topic, and is skipped however old its event time. (The dedup memory confirms
it: a copy whose ``event_id`` it does not know is applied after all, which
covers a forward that overtook an earlier one after a failed send.)

Pure logic plus the forward itself; :mod:`streams.worker.pipeline` calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import murmur2

from schemas import INPUT_TOPICS, InvalidEvent

__all__ = [
    "GATE_REASON",
    "PRODUCER_ADVICE",
    "REASONS",
    "REPARTITION_TOPIC",
    "Origin",
    "Router",
    "partition_for",
    "to_gate",
]

log = logging.getLogger(__name__)

#: Logical name of the internal topic rerouted messages go through.
REPARTITION_TOPIC = "repartition"
#: Why a message was rerouted (the ``reason`` label of the metric): a valid one
#: off its customer's partition, or an ``invalid`` one carried to the privacy
#: check of a customer it names (:meth:`Router.forward_to_gate`).
REASONS: tuple[str, ...] = ("unkeyed", "wrong_partition", "invalid")
#: What to tell the owner of a producer, per reason.
PRODUCER_ADVICE: dict[str, str] = {
    "unkeyed": "key every message by its customer_id",
    "wrong_partition": "place keys with the Java client's murmur2 partitioner "
    "(librdkafka, confluent-kafka, kcat: partitioner=murmur2_random; "
    "the Java client and aiokafka do by default)",
}

GATE_REASON = "invalid"  # an invalid message on its way to a customer's privacy check
SOURCE_HEADER = "segmenter-source"  # b"<full topic>:<partition>:<offset>"
SOURCE_KEY_HEADER = "segmenter-source-key"  # the source message's key, when it had one
REASON_HEADER = "segmenter-reason"  # one of REASONS


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner gives ``key``.

    ``toPositive(murmur2(key)) % partitions``, as in Kafka's
    ``BuiltInPartitioner.partitionForKey``; aiokafka's ``DefaultPartitioner``
    and librdkafka's ``murmur2_random`` agree (tested).

    Examples
    --------
    >>> partition_for(b"foobar", 10)  # Kafka's UtilsTest: murmur2("foobar") = -790332482
    6
    >>> [partition_for(c.encode(), 4) for c in ("c1", "c2", "c3")]
    [3, 1, 1]
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Origin:
    """Where a rerouted message was first produced.

    Examples
    --------
    >>> origin = Origin("t-purchases", 2, 41, None)
    >>> headers = origin.headers("unkeyed")
    >>> headers
    [('segmenter-source', b't-purchases:2:41'), ('segmenter-reason', b'unkeyed')]
    >>> Origin.from_headers(headers) == origin
    True
    >>> Origin.from_headers([("segmenter-source", b"t-purchases:2:41"),
    ...                      ("segmenter-source-key", b"")]).key
    b''
    """

    topic: str  # full name, with the prefix
    partition: int
    offset: int
    key: bytes | None

    def headers(self, reason: str) -> list[tuple[str, bytes]]:
        """The headers of a forward of this message (``reason``: one of :data:`REASONS`)."""
        headers = [(SOURCE_HEADER, f"{self.topic}:{self.partition}:{self.offset}".encode())]
        if self.key is not None:
            headers.append((SOURCE_KEY_HEADER, self.key))
        headers.append((REASON_HEADER, reason.encode()))
        return headers

    @classmethod
    def from_headers(
        cls, headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None
    ) -> Origin:
        """The origin a forward carries; :class:`~schemas.InvalidEvent` when it has none."""
        source: bytes | None = None
        key: bytes | None = None
        for name, value in header_items(headers):
            if name == SOURCE_HEADER:
                source = value
            elif name == SOURCE_KEY_HEADER:
                key = bytes(value)
        try:
            if source is None:
                raise ValueError(SOURCE_HEADER)
            topic, partition, offset = source.decode().rsplit(":", 2)
            return cls(topic, int(partition), int(offset), key)
        except (ValueError, UnicodeDecodeError):
            raise InvalidEvent(
                "unknown_topic",
                None,
                f"a message on the repartition topic needs a {SOURCE_HEADER} header "
                "`<topic>:<partition>:<offset>` (it is written by the worker only)",
            ) from None


def to_gate(message: Any) -> bool:
    """Whether a repartition-topic record is an invalid message on its way to a
    customer's privacy check (:meth:`Router.forward_to_gate`), not a forward.

    >>> from types import SimpleNamespace as Message
    >>> to_gate(Message(headers=Origin("t", 0, 1, None).headers("invalid")))
    True
    >>> to_gate(Message(headers=Origin("t", 0, 1, None).headers("unkeyed")))
    False
    """
    return any(
        name == REASON_HEADER and bytes(value) == GATE_REASON.encode()
        for name, value in header_items(message.headers)
    )


def header_items(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> list[tuple[str, bytes]]:
    """A message's headers as ``(name, value)`` pairs (Faust may hand a mapping).

    >>> header_items({"a": b"1"}), header_items(None), header_items((("a", b"1"),))
    ([('a', b'1')], [], [('a', b'1')])
    """
    if headers is None:
        return []
    return list(headers.items() if isinstance(headers, Mapping) else headers)


@dataclass
class Router:
    """Decides, per valid input message, whether it is applied where it landed,
    and forwards the ones that are not.

    Parameters
    ----------
    partitions
        Partitions of the input topics and the tables (``SEGMENTER_PARTITIONS``).
    count
        ``count(topic, reason)`` is called for every rerouted message (the metric).
    logical_topic
        The logical name of a full topic name (the prefix removed).
    cache_size
        Customer ids whose partition is remembered (murmur2 in pure Python costs
        microseconds; a cached lookup a fraction of one).

    Examples
    --------
    >>> from types import SimpleNamespace as Message
    >>> from schemas import InvalidEvent
    >>> router = Router(partitions=4)
    >>> router.partition_of("c1")
    3
    >>> router.reason(Message(key=b"c1", partition=3), "c1") is None  # applied here
    True
    >>> router.reason(Message(key=None, partition=3), "c1") is None  # unkeyed, but right
    True
    >>> router.reason(Message(key=None, partition=0), "c1")
    'unkeyed'
    >>> router.reason(Message(key=b"c1", partition=0), "c1")
    'wrong_partition'
    >>> try:
    ...     router.reason(Message(key=b"c2", partition=3), "c1")
    ... except InvalidEvent as error:
    ...     print(error.reason, error.field)
    key_mismatch customer_id
    """

    partitions: int
    count: Callable[[str, str], None] = lambda topic, reason: None
    logical_topic: Callable[[str], str] = lambda name: name
    cache_size: int = 1 << 16
    _warned: set[tuple[str, str]] = field(default_factory=set)
    _known: dict[str, int] = field(default_factory=dict)  # customer id -> partition

    def partition_of(self, customer_id: str) -> int:
        """The customer's partition (remembered: a dict lookup is ~0.05 µs)."""
        partition = self._known.get(customer_id)
        if partition is None:
            if len(self._known) >= self.cache_size:
                self._known.clear()  # (cheaper than LRU bookkeeping on every hit)
            partition = partition_for(customer_id.encode(), self.partitions)
            self._known[customer_id] = partition
        return partition

    def reason(self, message: Any, customer_id: str) -> str | None:
        """Why ``message`` must be rerouted (one of :data:`REASONS`), or ``None``.

        Raises :class:`~schemas.InvalidEvent` (``key_mismatch``) when the key
        names another customer. An empty key counts as no key.
        """
        key = message.key
        if key and key != customer_id.encode():
            shown = bytes(key).decode("utf-8", "replace")
            raise InvalidEvent(
                "key_mismatch",
                "customer_id",
                f"message key {shown!r} names another customer than customer_id "
                f"{customer_id!r}; key messages by customer_id",
            )
        partition = self._known.get(customer_id)
        if partition is None:
            partition = self.partition_of(customer_id)
        if message.partition == partition:
            return None
        return "wrong_partition" if key else "unkeyed"

    def source_topic(self, topic: str, message: Any) -> str:
        """The logical input topic whose schema and state ``message`` of ``topic`` belongs to."""
        if topic != REPARTITION_TOPIC:
            return topic
        source = self.logical_topic(Origin.from_headers(message.headers).topic)
        if source not in INPUT_TOPICS:
            raise InvalidEvent(
                "unknown_topic", None, f"a rerouted message names an unknown source {source!r}"
            )
        return source

    def origin(self, topic: str, message: Any) -> Origin | None:
        """Where a message of the repartition topic came from (``None`` for other topics
        and for a repartition message without a readable origin)."""
        if topic != REPARTITION_TOPIC:
            return None
        try:
            return Origin.from_headers(message.headers)
        except InvalidEvent:
            return None

    def forward_to_gate(
        self,
        topic: str,
        message: Any,
        origin: Origin | None,
        customers: Iterable[str],
        holds: Callable[[int], bool],
        outbox: Any,
    ) -> bool:
        """Carry a message about to be dead-lettered to the partition of a customer it
        names that this worker does not hold; whether it did.

        Only the worker holding a customer's partition knows whether the customer
        was erased or opted out (``streams.worker.privacy_gate``), and a suppressed
        customer's message must not reach ``dead-letters``. The message goes,
        unchanged and with its origin, through the repartition topic to the
        lowest such partition; the worker there checks what it holds and carries
        it on to the next one above (so every partition of a customer it names is
        checked once), and the last dead-letters it as produced
        (``topic``, partition, offset and key of the origin). ``origin`` is
        ``None`` for a message read where it was produced.
        """
        current = message.partition
        targets = sorted({self.partition_of(customer) for customer in customers})
        onward = [
            t for t in targets if t != current and not holds(t) and (origin is None or t > current)
        ]
        if not onward:
            return False
        if origin is None:
            origin = Origin(message.topic, message.partition, message.offset, message.key)
        outbox.add(
            REPARTITION_TOPIC,
            origin.key,
            message.value,
            partition=onward[0],
            headers=origin.headers(GATE_REASON),
            timestamp=message.timestamp / 1000 if message.timestamp else None,
        )
        self.count(topic, GATE_REASON)
        return True

    def reroute(self, topic: str, message: Any, customer_id: str, outbox: Any) -> bool:
        """Forward ``message`` of the logical ``topic`` through the repartition topic
        if it is not on ``customer_id``'s partition; whether it was.

        The forward goes into ``outbox`` (the batch's outputs), so the message is
        acked only once the broker has acknowledged the forward.
        """
        reason = self.reason(message, customer_id)
        if reason is None:
            return False
        if topic == REPARTITION_TOPIC:
            # Forwarded to another partition count (SEGMENTER_PARTITIONS changed):
            # on again, keeping the first origin.
            headers = header_items(message.headers)
            source = self.source_topic(topic, message)
        else:
            origin = Origin(message.topic, message.partition, message.offset, message.key)
            headers = origin.headers(reason)
            source = topic
        outbox.add(
            REPARTITION_TOPIC,
            customer_id.encode(),
            message.value,
            partition=self.partition_of(customer_id),
            headers=headers,
            # The producer takes seconds; records carry milliseconds. Event-to-emit
            # latency counts from the first append.
            timestamp=message.timestamp / 1000 if message.timestamp else None,
        )
        self.count(source, reason)
        if (source, reason) not in self._warned:
            self._warned.add((source, reason))
            log.warning(
                "%s: messages %s are rerouted by customer_id through the %s topic "
                "(an extra hop; counted in segmenter_events_repartitioned_total). "
                "To avoid it, %s.",
                source,
                "without a key"
                if reason == "unkeyed"
                else "on another partition than murmur2(customer_id) gives",
                REPARTITION_TOPIC,
                PRODUCER_ADVICE[reason],
            )
        return True
