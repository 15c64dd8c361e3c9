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

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from schemas import INPUT_TOPICS, InvalidEvent, validate_output
from streams.codec import decode_state
from streams.ordering import EventTimeOrder
from streams.repartition import Origin, Router, partition_for
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

    async def send(self, *, key: bytes | None, value: bytes, **options: Any) -> Any:
        if self.release is not None:
            await self.release.wait()
        partition = options["partition"]
        log = self.log.setdefault(partition, [])
        log.append(
            # (the producer takes seconds; the broker stores and hands back ms)
            Msg(partition, key, value, len(log), "repartition", options["timestamp"] * 1000,
                options["headers"])
        )  # fmt: skip
        return None

    def records(self) -> list[Msg]:
        return [m for log in self.log.values() for m in log]


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


@pytest.fixture
def h(app: Any) -> Harness:
    """The stream tests' app, with four partitions' worth of routing."""
    harness = Harness(app)
    settings = app.segmenter.settings
    app.pipeline.router = Router(4, app.segmenter.metrics.repartitioned, settings.logical_topic)
    app.pipeline.outputs["repartition"] = harness.topic
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


async def test_a_repartition_message_without_an_origin_is_dead_lettered(h: Harness) -> None:
    stray = Msg(C1_PARTITION, b"c1", purchase("o1", T0), 0, "repartition")
    await h.submit("repartition", stray)
    (dead,) = h.dead()
    assert dead["error"]["reason"] == "unknown_topic"
    assert (dead["source_topic"], dead["offset"]) == ("repartition", 0)
    assert h.pipeline.customers.get("c1", C1_PARTITION) is None


async def test_rerouted_events_take_their_turn_in_event_time(h: Harness) -> None:
    """The repartition topic is one more input of the partition: a browsing event
    waits while the repartition topic has not caught up to it, and a rerouted
    purchase older than it is applied first."""
    behind = {"repartition"}
    pipeline = h.pipeline
    pipeline.order = EventTimeOrder([*INPUT_TOPICS, "repartition"])
    pipeline.caught_up = lambda topic, partition: topic not in behind
    applied: list[tuple[str, int]] = []
    apply = pipeline.apply

    def spy(topic: str, message: Any, event: dict[str, Any], batch: Any) -> None:
        applied.append((topic, event["ts"]))
        apply(topic, message, event, batch)

    pipeline.apply = spy
    await h.submit("purchases", bought(1, T0 + DAY))
    (forward,) = h.topic.records()
    browse = event("b1", T0 + 2 * DAY, session_id="s1", action="page_view")
    browsing = await pipeline.submit("browsing", [Msg(C1_PARTITION, b"c1", browse, 0, "browsing")])
    assert applied == []  # held: the repartition topic may still bring something older
    await h.submit("repartition", forward)
    behind.clear()  # the repartition topic is read to its end
    await pipeline.release_due()
    assert await asyncio.wait_for(browsing.done, 5)
    assert applied == [("repartition", T0 + DAY), ("browsing", T0 + 2 * DAY)]
    assert h.orders() == 1
