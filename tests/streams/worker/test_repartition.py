"""Rerouting by customer_id: the partition check, and the pipeline's forward and apply.

A message that is not on its customer's partition (unkeyed, or placed by
another partitioner) is forwarded to the repartition topic instead of being
applied where it landed; the forward comes back on the customer's partition
and is applied there once, however often it was forwarded or delivered.
"""

from __future__ import annotations

import asyncio
import random
import string
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from models.ordering import EventTimeOrder
from schemas import INPUT_TOPICS, InvalidEvent, validate_output
from streams.codec import decode_state
from streams.worker.repartition import Origin, Router, partition_for
from streams.worker.reroute_merge import ProgressMark, event_time_topics
from tests.streams.conftest import event, purchase

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000
C1_PARTITION = 3  # murmur2("c1") % 4

# Kafka's own vectors for its murmur2 (clients/.../utils/UtilsTest.testMurmur2):
# the Java client's default partitioner places keys by these hashes.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


# -- the partition check ---------------------------------------------------------------------
@pytest.mark.parametrize(("key", "java_hash"), JAVA_MURMUR2.items())
def test_partition_of_a_key_is_the_java_clients(key: bytes, java_hash: int) -> None:
    for partitions in (1, 3, 4, 12, 50, 64):
        assert partition_for(key, partitions) == (java_hash & 0x7FFFFFFF) % partitions
    assert murmur2(key) == java_hash & 0xFFFFFFFF


def test_partition_of_a_customer_agrees_with_aiokafkas_default_partitioner() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "-_.@é€😀"
    ids = [f"c{i:06d}" for i in range(2000)] + [
        "".join(rng.choices(alphabet, k=rng.randint(1, 60))) for _ in range(8000)
    ]
    partitioner = DefaultPartitioner()
    for partitions in (1, 2, 4, 7, 16, 100):
        router = Router(partitions)
        everyone = list(range(partitions))
        for customer_id in ids:
            key = customer_id.encode()
            expected = partitioner(key, everyone, everyone)
            assert router.partition_of(customer_id) == expected == partition_for(key, partitions)


@dataclass
class Msg:
    """The fields of a consumer record the router and the pipeline read (the
    timestamp in milliseconds, as aiokafka hands it)."""

    partition: int
    key: bytes | None
    value: bytes = b"{}"
    offset: int = 0
    topic: str = "purchases"
    timestamp: float = T0
    headers: list[tuple[str, bytes]] | None = None
    generation_id: int = 1


def test_a_message_is_rerouted_only_off_its_customers_partition() -> None:
    router = Router(4)
    assert router.reason(Msg(C1_PARTITION, b"c1"), "c1") is None
    assert router.reason(Msg(C1_PARTITION, None), "c1") is None  # unkeyed but in place
    assert router.reason(Msg(C1_PARTITION, b""), "c1") is None  # an empty key is no key
    assert router.reason(Msg(0, None), "c1") == "unkeyed"
    assert router.reason(Msg(0, b""), "c1") == "unkeyed"
    assert router.reason(Msg(0, b"c1"), "c1") == "wrong_partition"
    with pytest.raises(InvalidEvent) as err:
        router.reason(Msg(C1_PARTITION, b"c2"), "c1")  # right partition, another customer
    assert err.value.reason == "key_mismatch"


def test_an_origin_survives_the_headers_and_a_missing_one_is_an_error() -> None:
    origin = Origin("t-privacy", 11, 12345678901, b"\xff raw key")
    assert Origin.from_headers(origin.headers("wrong_partition")) == origin
    assert Origin.from_headers(dict(origin.headers("unkeyed"))) == origin
    for headers in (None, [], [("segmenter-source", b"no-offsets")]):
        with pytest.raises(InvalidEvent) as err:
            Origin.from_headers(headers)
        assert err.value.reason == "unknown_topic"


# -- the pipeline ------------------------------------------------------------------------------
class RepartitionTopic:
    """Stands in for the repartition topic: records each forward where Kafka would put it."""

    def __init__(self) -> None:
        self.log: dict[int, list[Msg]] = {}
        self.release: asyncio.Event | None = None  # set: sends wait for it (a producer stall)
        # set: the next send waits for it (a full producer buffer in front of one record)
        self.stall_next: asyncio.Event | None = None

    async def send(self, *, key: bytes | None, value: bytes, **options: Any) -> Any:
        if self.release is not None:
            await self.release.wait()
        if self.stall_next is not None:
            stall, self.stall_next = self.stall_next, None
            await stall.wait()
        partition = options["partition"]
        log = self.log.setdefault(partition, [])
        # (the producer takes seconds; the broker stores and hands back ms)
        timestamp = (options.get("timestamp") or 0) * 1000 or T0
        log.append(
            Msg(partition, key, value, len(log), "repartition", timestamp, options["headers"])
        )
        return None

    def records(self) -> list[Msg]:
        """The forwards (not the progress marks), partition by partition."""
        return [m for log in self.log.values() for m in log if not is_mark(m)]

    def marks(self, partition: int) -> list[ProgressMark]:
        return [mark for m in self.log.get(partition, []) if (mark := ProgressMark.of(m))]


def is_mark(message: Msg) -> bool:
    return ProgressMark.of(message) is not None


@dataclass
class Harness:
    app: Any
    topic: RepartitionTopic = field(default_factory=RepartitionTopic)

    @property
    def pipeline(self) -> Any:
        return self.app.pipeline

    async def submit(self, topic: str, *messages: Msg) -> None:
        submission = await self.pipeline.submit(topic, list(messages))
        assert await asyncio.wait_for(submission.done, 5)

    def state(self, customer_id: str = "c1", partition: int = C1_PARTITION) -> dict[str, Any]:
        state = decode_state(self.pipeline.customers.get(customer_id, partition))
        assert state is not None, f"{customer_id} has no record on partition {partition}"
        return state

    def orders(self) -> int:
        view = self.app.segmenter.processor.view("c1", self.state(), T0 + 365 * DAY)
        return int(view["features"]["orders"])

    def sample(self, name: str, **labels: str) -> float:
        return self.app.segmenter.metrics.sample(name, **labels) or 0.0

    def dead(self) -> list[dict[str, Any]]:
        return [value for _, value in self.pipeline.outputs["dead-letters"].sent]


class PartitionedStore:
    """A table's local store kept per partition, as RocksDB keeps it (``memory://``
    keeps one dict: a lookup on one partition would see another's keys)."""

    def __init__(self) -> None:
        self.data: dict[int, dict[bytes, bytes]] = {}

    def read(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get(partition, {}).get(key)

    def write(self, partition: int, values: dict[bytes, bytes | None]) -> None:
        stored = self.data.setdefault(partition, {})
        for key, value in values.items():
            if value is None:
                stored.pop(key, None)
            else:
                stored[key] = value


@pytest.fixture
def h(app: Any) -> Harness:
    """The stream tests' app, with four partitions' worth of routing, all held here
    unless a test says otherwise."""
    harness = Harness(app)
    settings = app.segmenter.settings
    pipeline = app.pipeline
    pipeline.router = Router(4, app.segmenter.metrics.repartitioned, settings.logical_topic)
    pipeline.outputs["repartition"] = harness.topic
    pipeline.holds = lambda partition: True
    for table in (pipeline.customers, pipeline.suppressions):
        table.store = PartitionedStore()
        table._read, table._write = table.store.read, table.store.write
    return harness


def bought(offset: int, ts: int, *, partition: int = 0, key: bytes | None = b"c1") -> Msg:
    return Msg(partition, key, purchase(f"o{offset}", ts), offset)


async def test_a_mispartitioned_purchase_is_forwarded_not_applied_where_it_landed(
    h: Harness,
) -> None:
    await h.submit("purchases", bought(5, T0))
    assert h.pipeline.customers.get("c1", 0) is None  # not applied on partition 0
    (forward,) = h.topic.records()
    assert forward.partition == C1_PARTITION and forward.key == b"c1"
    assert forward.value == purchase("o5", T0)  # the message itself, unchanged
    assert forward.timestamp == T0  # the first append's time
    assert dict(forward.headers or ()) == {
        "segmenter-source": b"purchases:0:5",
        "segmenter-source-key": b"c1",
        "segmenter-reason": b"wrong_partition",
    }
    repartitioned = "segmenter_events_repartitioned_total"
    assert h.sample(repartitioned, topic="purchases", reason="wrong_partition") == 1
    assert h.sample("segmenter_events_processed_total", topic="purchases") == 0
    await h.submit("repartition", forward)
    assert h.orders() == 1
    assert h.state()["rp"] == {"purchases": {"0": 5}}
    assert h.sample("segmenter_events_processed_total", topic="purchases") == 1
    assert h.dead() == []


async def test_the_source_is_acked_only_once_its_forward_is_acknowledged(h: Harness) -> None:
    h.topic.release = asyncio.Event()
    submission = await h.pipeline.submit("purchases", [bought(5, T0)])
    await asyncio.sleep(0.3)
    assert not submission.done.done()  # the producer has not acknowledged the forward
    h.topic.release.set()
    assert await asyncio.wait_for(submission.done, 5)
    assert len(h.topic.records()) == 1


async def test_forwards_reach_the_topic_in_the_order_their_sources_were_read(
    h: Harness,
) -> None:
    """The next fetch is processed while the previous batch's outputs are still
    being handed to the producer (a full buffer stalls one send): its forwards
    must not overtake them. The per-source watermark takes a forward whose source
    offset is below an applied one for a copy, so an overtaken forward would be
    lost if it is also older than the dedup window."""
    h.topic.stall_next = stalled = asyncio.Event()
    first = await h.pipeline.submit("purchases", [bought(5, T0)])
    second = await h.pipeline.submit("purchases", [bought(6, T0 + 30 * DAY)])
    await asyncio.sleep(0.2)
    assert h.topic.records() == []  # the second batch waits for the first one's send
    stalled.set()
    assert await asyncio.wait_for(first.done, 5) and await asyncio.wait_for(second.done, 5)
    assert [dict(m.headers or ())["segmenter-source"] for m in h.topic.records()] == [
        b"purchases:0:5",
        b"purchases:0:6",
    ]
    await h.submit("repartition", *h.topic.records())
    assert h.orders() == 2 and h.dead() == []


async def test_a_forward_applied_twice_counts_once_however_old(h: Harness) -> None:
    """A crash after the forward but before the source's commit forwards it again;
    a crash before the repartition topic's commit delivers it again."""
    await h.submit("purchases", bought(5, T0), bought(6, T0 + 30 * DAY))
    first, later = h.topic.records()
    await h.submit("repartition", first, later)
    assert h.orders() == 2
    # The source read again from its committed offset: forwarded a second time.
    await h.submit("purchases", bought(5, T0), bought(6, T0 + 30 * DAY))
    again, later_again = h.topic.records()[2:]
    assert (again.offset, later_again.offset) == (2, 3)  # new offsets, same origin
    await h.submit("repartition", again, later_again)
    await h.submit("repartition", first)  # and the repartition topic re-delivered
    assert h.orders() == 2
    # o5 is 30 days older than c1's newest purchase: beyond the dedup window it
    # would be "late", but the watermark knows it for a copy of our own.
    assert h.dead() == []
    assert h.sample("segmenter_events_duplicate_total", topic="purchases") == 3


async def test_a_forward_that_overtook_an_earlier_one_is_still_applied(h: Harness) -> None:
    """A failed send re-sent after a later one succeeded: the earlier source offset
    arrives second; the dedup memory does not know it, so it is applied."""
    await h.submit("purchases", bought(7, T0), bought(8, T0 + DAY))
    seventh, eighth = h.topic.records()
    await h.submit("repartition", eighth)
    await h.submit("repartition", seventh)
    assert h.orders() == 2
    assert h.state()["rp"] == {"purchases": {"0": 8}}  # the watermark never goes back


async def test_a_late_rerouted_event_is_dead_lettered_where_it_was_produced(h: Harness) -> None:
    await h.submit("purchases", bought(1, T0 + 30 * DAY), bought(2, T0, key=None))
    newest, old = h.topic.records()
    await h.submit("repartition", newest, old)
    assert h.orders() == 1
    (dead,) = h.dead()
    validate_output("dead-letters", dead)
    assert dead["error"]["reason"] == "late"
    assert (dead["source_topic"], dead["partition"], dead["offset"]) == ("purchases", 0, 2)
    assert dead["event_id"] == "dlq:purchases:0:2" and dead["key"] is None
    assert h.sample("segmenter_events_rejected_total", topic="purchases", reason="late") == 1


async def test_a_key_naming_another_customer_is_dead_lettered_not_forwarded(h: Harness) -> None:
    await h.submit("purchases", bought(3, T0, key=b"c2"))
    assert h.topic.records() == []
    (dead,) = h.dead()
    assert dead["error"]["reason"] == "key_mismatch" and dead["key"] == "c2"


async def test_messages_in_place_are_applied_directly_keyed_or_not(h: Harness) -> None:
    await h.submit(
        "purchases",
        bought(1, T0, partition=C1_PARTITION),
        bought(2, T0 + DAY, partition=C1_PARTITION, key=None),
    )
    assert h.topic.records() == []
    assert h.orders() == 2
    assert h.state()["off"]["purchases"] == [C1_PARTITION, 2]
    for reason in ("unkeyed", "wrong_partition"):
        assert (
            h.sample("segmenter_events_repartitioned_total", topic="purchases", reason=reason) == 0
        )


async def test_an_unkeyed_erase_reaches_the_customers_record(h: Harness) -> None:
    await h.submit("purchases", bought(1, T0, partition=C1_PARTITION))
    erase = Msg(1, None, event("x1", T0 + DAY, action="erase"), 9, "privacy")
    await h.submit("privacy", erase)
    assert h.pipeline.customers.get("c1", C1_PARTITION) is not None  # not yet: forwarded
    (forward,) = h.topic.records()
    assert dict(forward.headers or ())["segmenter-reason"] == b"unkeyed"
    await h.submit("repartition", forward)
    assert h.pipeline.customers.get("c1", C1_PARTITION) is None
    (confirmation,) = [v for _, v in h.pipeline.outputs["privacy-confirmations"].sent]
    assert confirmation["status"] == "done" and confirmation["details"]["table_entries"] == 1
    assert h.sample("segmenter_events_repartitioned_total", topic="privacy", reason="unkeyed") == 1


async def test_an_erase_forwarded_twice_leaves_the_customers_return_alone(h: Harness) -> None:
    """The source of an unkeyed erase is read again after a crash and forwarded a
    second time; newer purchases brought the customer back in between."""
    erase = Msg(1, None, event("x1", T0 + DAY, action="erase"), 9, "privacy")
    await h.submit("purchases", bought(1, T0, partition=C1_PARTITION))
    await h.submit("privacy", erase)
    await h.submit("repartition", h.topic.records()[0])
    assert h.pipeline.customers.get("c1", C1_PARTITION) is None
    await h.submit("purchases", bought(2, T0 + 2 * DAY, partition=C1_PARTITION))
    await h.submit("privacy", erase)  # read again: a second forward
    await h.submit("repartition", h.topic.records()[1])
    assert h.orders() == 1
    sent = [v for _, v in h.pipeline.outputs["privacy-confirmations"].sent]
    assert [(c["request_event_id"], c["status"]) for c in sent] == [("x1", "done")] * 2


# -- invalid messages meet their customer's privacy check --------------------------------------
def invalid(event_id: str, ts: int, customer: str = "c1") -> bytes:
    """An invalid purchase (negative amount) carrying personal data."""
    value = orjson.loads(purchase(event_id, ts, amount=-1.0)) | {"customer_id": customer}
    return orjson.dumps(value | {"email": "c1.private@example.org"})


async def erase_c1(h: Harness) -> None:
    await h.submit("purchases", bought(1, T0, partition=C1_PARTITION))
    await h.submit("privacy", Msg(C1_PARTITION, b"c1", event("x1", T0 + DAY, action="erase"), 0))
    assert h.pipeline.customers.get("c1", C1_PARTITION) is None


async def test_an_erased_customers_invalid_message_meets_the_owners_gate(h: Harness) -> None:
    """The message lands on a partition of a worker that does not hold the
    customer's: it cannot tell the customer was erased, so it does not dead-letter
    the message (with its e-mail) but carries it to the customer's partition, whose
    worker drops it."""
    await erase_c1(h)
    h.pipeline.holds = lambda partition: partition != C1_PARTITION  # another worker's
    await h.submit("purchases", Msg(0, None, invalid("o2", T0 + 2 * DAY), 4))
    assert h.dead() == []
    (forward,) = h.topic.records()
    assert forward.partition == C1_PARTITION and forward.key is None
    assert dict(forward.headers or ())["segmenter-reason"] == b"invalid"
    assert (
        h.sample("segmenter_events_repartitioned_total", topic="purchases", reason="invalid") == 1
    )
    h.pipeline.holds = lambda partition: partition == C1_PARTITION  # the owner's worker
    await h.submit("repartition", forward)
    assert h.dead() == []
    assert h.sample("segmenter_events_rejected_total", topic="purchases", reason="erased") == 1


async def test_an_invalid_message_is_dead_lettered_at_the_owners_gate_as_produced(
    h: Harness,
) -> None:
    h.pipeline.holds = lambda partition: partition != C1_PARTITION
    await h.submit("purchases", Msg(0, None, invalid("o2", T0), 4))
    (forward,) = h.topic.records()
    h.pipeline.holds = lambda partition: partition == C1_PARTITION
    await h.submit("repartition", forward)
    (dead,) = h.dead()
    validate_output("dead-letters", dead)
    assert dead["error"]["reason"] == "schema"
    assert (dead["source_topic"], dead["partition"], dead["offset"], dead["key"]) == (
        "purchases", 0, 4, None
    )  # fmt: skip
    assert dead["event_id"] == "dlq:purchases:0:4" and dead["payload"] == invalid("o2", T0).decode()
    assert h.sample("segmenter_events_rejected_total", topic="purchases", reason="schema") == 1


async def test_a_message_naming_two_customers_meets_both_gates(h: Harness) -> None:
    """Keyed by c2 (partition 1), naming c1 (partition 3), on partition 0: each
    partition's worker checks its own customer, in partition order, and c1's, who
    was erased, drops it."""
    await erase_c1(h)
    h.pipeline.holds = lambda partition: partition == 0
    await h.submit("purchases", Msg(0, b"c2", purchase("o2", T0 + 2 * DAY), 4))  # key_mismatch
    (to_c2,) = h.topic.records()
    assert (to_c2.partition, to_c2.key) == (1, b"c2")
    h.pipeline.holds = lambda partition: partition == 1
    await h.submit("repartition", to_c2)
    (_, to_c1) = h.topic.records()
    assert to_c1.partition == C1_PARTITION
    h.pipeline.holds = lambda partition: partition == C1_PARTITION
    await h.submit("repartition", to_c1)
    assert h.dead() == []
    assert h.sample("segmenter_events_rejected_total", topic="purchases", reason="erased") == 1
    # Not erased, the same message is dead-lettered at the last gate, as produced.
    h.pipeline.suppressions.store.data.clear()
    await h.submit("repartition", to_c1)
    (dead,) = h.dead()
    assert dead["error"]["reason"] == "key_mismatch" and dead["key"] == "c2"


async def test_invalid_messages_of_customers_held_here_are_checked_here(h: Harness) -> None:
    await erase_c1(h)
    await h.submit("purchases", Msg(0, None, invalid("o2", T0 + 2 * DAY), 4))
    await h.submit("purchases", Msg(0, None, invalid("o3", T0, customer="c2"), 5))
    assert h.topic.records() == []
    assert [(d["error"]["reason"], d["offset"]) for d in h.dead()] == [("schema", 5)]


async def test_a_repartition_message_without_an_origin_is_dead_lettered(h: Harness) -> None:
    stray = Msg(C1_PARTITION, b"c1", purchase("o1", T0), 0, "repartition")
    await h.submit("repartition", stray)
    (dead,) = h.dead()
    assert dead["error"]["reason"] == "unknown_topic"
    assert (dead["source_topic"], dead["offset"]) == ("repartition", 0)
    assert h.pipeline.customers.get("c1", C1_PARTITION) is None


# -- rerouted events in event-time order (streams.worker.reroute_merge) ----------------------
EVERY_SOURCE = [(topic, p) for topic in INPUT_TOPICS for p in range(4)]


@dataclass
class Merge:
    """The harness with the event-time order on: source partitions in ``behind`` have
    more to read; the worker reads every source partition and repartition partition."""

    h: Harness
    behind: set[tuple[str, int]]
    applied: list[tuple[str, int]] = field(default_factory=list)
    delivered: dict[int, int] = field(default_factory=dict)

    async def tick(self) -> None:
        """The worker's timer: held events due, and progress marks (with the producer after)."""
        await self.h.pipeline.release_due()
        await self.h.pipeline.drain()

    async def deliver(self, partition: int = C1_PARTITION) -> list[Any]:
        """Everything forwarded or marked to ``partition`` since the last call, in order."""
        await self.h.pipeline.drain()  # (what the timer sent is with the producer)
        log = self.h.topic.log.get(partition, [])
        new = log[self.delivered.get(partition, 0) :]
        self.delivered[partition] = len(log)
        return [await self.h.pipeline.submit("repartition", new)] if new else []


@pytest.fixture
def merge(h: Harness) -> Merge:
    state = Merge(h, behind=set())
    pipeline = h.pipeline
    pipeline.order = EventTimeOrder(event_time_topics(4))
    # No learner here: the cluster model's pace would hold day 20 for a model that
    # never comes (tests/streams/worker/test_model_pace.py tests that bound).
    pipeline.rt.model_pace.lead_ms = 0
    pipeline.caught_up = lambda topic, partition: (topic, partition) not in state.behind
    pipeline.sources = lambda: EVERY_SOURCE
    apply = pipeline.apply

    def spy(topic: str, message: Any, event: dict[str, Any], batch: Any) -> None:
        state.applied.append((orjson.loads(message.value)["event_id"], event["ts"]))
        apply(topic, message, event, batch)

    pipeline.apply = spy
    return state


async def test_a_rerouted_event_waits_for_the_source_partitions_behind_it(
    h: Harness, merge: Merge
) -> None:
    """An unkeyed backlog: source partition 0 is read up to day 20 of c1 while
    source partition 1 has not been read yet; it holds c1's day 1. Applied in
    arrival order, day 1 would come 19 days after day 20 and be dead-lettered as
    late. Each source partition's reader announces how far it has read it, and the
    customer's partition releases events only past every source still behind."""
    merge.behind = {("purchases", 0), ("purchases", 1)}
    await merge.tick()  # the worker announces the source partitions read up
    await h.submit("purchases", bought(1, T0 + 20 * DAY, key=None))
    (mark,) = h.topic.marks(C1_PARTITION)[-1:]
    assert (mark.topic, mark.partition, mark.newest) == ("purchases", 0, T0 + 20 * DAY)
    assert (mark.caught_up, mark.forwarding) == (False, True)
    await merge.deliver()
    assert merge.applied == []  # purchases[1] has not said how far it is
    await h.submit("purchases", bought(2, T0 + DAY, partition=1, key=None))
    await merge.deliver()
    assert merge.applied == [("o2", T0 + DAY)]  # purchases[1] is at day 1
    merge.behind.clear()  # read to the end: the next announcement says so
    await merge.tick()
    held = await merge.deliver()
    await merge.tick()
    assert merge.applied == [("o2", T0 + DAY), ("o1", T0 + 20 * DAY)]
    assert all([await asyncio.wait_for(s.done, 5) for s in held])
    assert h.orders() == 2 and h.dead() == []


async def test_a_source_partition_not_heard_from_holds_back_for_a_while_only(
    h: Harness, merge: Merge
) -> None:
    """A source partition whose reader is gone says nothing: after ``idle_seconds``
    it no longer holds the others back (order traded for progress)."""
    h.pipeline.sources = lambda: [s for s in EVERY_SOURCE if s != ("purchases", 1)]
    h.pipeline.merge.idle_seconds = 0.3
    await merge.tick()
    await h.submit("purchases", bought(1, T0, key=None))
    await merge.deliver()
    assert merge.applied == []
    await asyncio.sleep(0.4)
    await merge.tick()
    assert merge.applied == [("o1", T0)]


async def test_source_partitions_that_forward_nothing_hold_nothing_back(
    h: Harness, merge: Merge
) -> None:
    merge.behind = {("purchases", 0)}  # behind, but its messages are where they belong
    await merge.tick()
    assert h.topic.marks(C1_PARTITION) != []
    assert ("purchases", 0) not in {(m.topic, m.partition) for m in h.topic.marks(C1_PARTITION)}
    c9 = orjson.dumps(orjson.loads(purchase("o0", T0)) | {"customer_id": "c9"})
    await h.pipeline.submit("purchases", [Msg(0, b"c9", c9, 0)])  # c9's partition is 0
    await h.pipeline.drain()
    assert h.topic.records() == []
    (mark,) = [m for m in h.topic.marks(C1_PARTITION) if (m.topic, m.partition) == ("purchases", 0)]
    assert (mark.newest, mark.caught_up, mark.forwarding) == (T0, False, False)
    await merge.deliver()
    # c1's purchase, on c1's partition, is later than how far purchases[0] is read;
    # purchases[0] forwards nothing, so nothing waits for it.
    await h.submit("purchases", bought(1, T0 + DAY, partition=C1_PARTITION))
    assert ("o1", T0 + DAY) in merge.applied


async def test_marks_tell_only_what_changed(h: Harness, merge: Merge) -> None:
    merge.behind = {("purchases", 0)}
    await merge.tick()
    announced = len(h.topic.marks(0))
    assert announced == len(EVERY_SOURCE) - 1  # (the source behind waits for its first read)
    await merge.tick()
    assert len(h.topic.marks(0)) == announced  # nothing new
    for offset in range(3):  # behind and forwarding: newer times, at most every interval
        await h.submit("purchases", bought(offset, T0 + offset * DAY, key=None))
    assert len(h.topic.marks(0)) == announced + 1
    await asyncio.sleep(h.pipeline.merge.mark_interval)
    await h.submit("purchases", bought(3, T0 + 3 * DAY, key=None))
    assert [m.newest for m in h.topic.marks(0)[announced:]] == [T0, T0 + 3 * DAY]
    merge.behind.clear()
    await merge.tick()
    assert h.topic.marks(0)[-1].caught_up
    assert all(len(h.topic.marks(p)) == announced + 3 for p in range(4))  # to every partition


async def test_marks_are_neither_events_nor_counted(h: Harness, merge: Merge) -> None:
    await merge.tick()
    (submission,) = await merge.deliver(0)
    assert await asyncio.wait_for(submission.done, 5)
    assert h.sample("segmenter_events_consumed_total", topic="repartition") == 0
    assert h.dead() == []


async def test_a_record_with_a_broken_mark_is_dead_lettered(h: Harness) -> None:
    broken = Msg(C1_PARTITION, None, b"{}", 0, "repartition",
                 headers=[("segmenter-progress", b"purchases:x")])  # fmt: skip
    await h.submit("repartition", broken)
    (dead,) = h.dead()
    assert dead["error"]["reason"] == "unknown_topic"


async def test_rerouted_events_take_their_turn_among_the_partitions_own(
    h: Harness, merge: Merge
) -> None:
    """A browsing event read on the customer's partition waits while a source
    partition that forwards may still bring something older."""
    merge.behind = {("purchases", 0)}
    await merge.tick()
    await h.submit("purchases", bought(1, T0 + DAY, key=None))
    browse = event("b1", T0 + 2 * DAY, session_id="s1", action="page_view")
    browsing = await h.pipeline.submit(
        "browsing", [Msg(C1_PARTITION, b"c1", browse, 0, "browsing")]
    )
    await merge.deliver()
    assert merge.applied == [("o1", T0 + DAY)]  # browsing waits: purchases[0] is at day 1
    merge.behind.clear()
    await merge.tick()
    await merge.deliver()
    assert merge.applied == [("o1", T0 + DAY), ("b1", T0 + 2 * DAY)]
    assert await asyncio.wait_for(browsing.done, 5)
