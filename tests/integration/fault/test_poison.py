"""Messages that cannot be processed go to dead letters; the partition goes on.

Two kinds of poison:

* out-of-range values (``amount`` 1e308, ``items`` 2**64-1) that would overflow
  a customer's running totals: the schemas bound them, so they are rejected
  with reason ``schema`` before they touch any state;
* a customer whose stored state is unreadable (a record left in the table's
  changelog by an incompatible release, restored into RocksDB at start-up):
  every event of that customer raises during processing and is dead-lettered
  with reason ``processing_error``.

In both cases later messages of the same partition must still be processed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import murmur2

from models.eventtime import format_ts
from streams.ops.producing import produce
from tests.integration.conftest import Stack, wait_for
from tests.integration.fault.conftest import history, read_topic, wait_committed, wait_features
from tests.reference import reference_features

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MINUTE = 60_000


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner puts ``key`` in."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def purchase(customer_id: str, n: int, ts: int, **fields: Any) -> tuple[str, dict[str, Any]]:
    event = {
        "event_id": f"{customer_id}-p{n}",
        "customer_id": customer_id,
        "ts": ts,
        "order_id": f"{customer_id}-o{n}",
        "amount": 10.0,
        "items": 1,
        "category": "books",
        "channel": "web",
    }
    event.update(fields)
    return "purchases", event


def test_poison_messages_are_dead_lettered_and_the_partition_goes_on(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    hist = history(customers=30, days=20, seed=17)
    t0 = hist.clock_ms - 60 * MINUTE
    customers = sorted(hist.expected)
    # The poisoned customers share a partition with a customer of the history.
    witness = customers[0]
    part = partition_of(witness, stack.partitions)
    poisoned = [f"poison-{i}" for i in range(300) if partition_of(f"poison-{i}", 4) == part][:3]
    huge, wide, broken = poisoned

    # An unreadable state record for `broken`, as an incompatible release might
    # have left it in the changelog; the worker restores it at start-up.
    changelog = f"{stack.app_id}-{stack.prefix}customers-changelog"
    asyncio.run(produce_raw(stack, changelog, part, orjson.dumps(broken), b'{"f": 42}'))

    poison = [
        purchase(huge, 1, t0, amount=1e308),
        purchase(wide, 1, t0, items=2**64 - 1),
        purchase(broken, 1, t0),
        purchase(broken, 2, t0 + MINUTE),
    ]
    # After the poison: one more purchase for every customer of the history.
    after = [purchase(c, 99, t0 + 30 * MINUTE + i) for i, c in enumerate(customers)]
    events = hist.events + after
    expected = reference_features(events, max(hist.clock_ms, after[-1][1]["ts"]))

    worker = stack.worker("w1")
    asyncio.run(stack.produce(hist.events + poison + after))
    wait_features(worker, expected, timeout=150)
    wait_committed(stack, timeout=60)
    assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()

    def poison_letters() -> list[dict[str, Any]]:
        letters = asyncio.run(read_topic(stack, "dead-letters", timeout=3))
        return [d for d in letters if d["key"] in poisoned]

    letters = wait_for(lambda: len(poison_letters()) >= 4 and poison_letters(), timeout=30)
    by_event = {d["payload"].split('"event_id":"')[1].split('"')[0]: d for d in letters}
    assert set(by_event) == {f"{huge}-p1", f"{wide}-p1", f"{broken}-p1", f"{broken}-p2"}
    assert by_event[f"{huge}-p1"]["error"]["reason"] == "schema"
    assert by_event[f"{huge}-p1"]["error"]["field"] == "amount"
    assert by_event[f"{wide}-p1"]["error"]["field"] == "items"
    for event_id in (f"{broken}-p1", f"{broken}-p2"):
        assert by_event[event_id]["error"]["reason"] == "processing_error"
    for letter in by_event.values():
        assert letter["source_topic"] == stack.topic("purchases")
        assert letter["partition"] == part

    # The worker keeps serving; the witness's later purchase was processed.
    status, body = worker.get(f"/customers/{witness}")
    assert status == 200 and body["features"]["last_purchase_ts"] == format_ts(after[0][1]["ts"])


async def produce_raw(stack: Stack, topic: str, partition: int, key: bytes, value: bytes) -> None:
    await produce(stack.bootstrap, [(topic, key, value, partition)])


def test_a_schema_valid_amount_never_corrupts_the_customer(
    stack_factory: Callable[..., Stack],
) -> None:
    """An accepted purchase must leave the customer able to accept the next one."""
    stack = stack_factory()
    customer = "overflow-1"
    t0 = int(time.time() * 1000) - 3 * 86_400_000
    worker = stack.worker("w1")
    asyncio.run(
        stack.produce(
            [
                purchase(customer, 1, t0, amount=1e308),
                purchase(customer, 2, t0 + MINUTE, amount=1e308),
                purchase(customer, 3, t0 + 2 * MINUTE),
            ]
        )
    )
    wait_committed(stack, timeout=90)

    def features() -> dict[str, Any]:
        status, body = worker.get(f"/customers/{customer}")
        return body["features"] if status == 200 else {}

    feats = wait_for(features, timeout=30)
    letters = asyncio.run(read_topic(stack, "dead-letters", timeout=3))
    # Either the overflowing purchase is rejected (dead-lettered as invalid) and
    # the rest is counted, or all three are counted; never a silent null
    # revenue followed by dead-lettered valid purchases.
    assert feats["revenue"] is not None, feats
    assert not any(d["error"]["reason"] == "processing_error" for d in letters), letters
