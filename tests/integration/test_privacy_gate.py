"""The privacy path comes first, on the real broker: after an erasure or an
opt-out, nothing a producer sends about the customer (valid or not, keyed or
not, or naming them under another key) reaches dead-letters or the logs; it
is dropped and counted. Other customers' bad messages are dead-lettered as
before (the control that shows the dead-letter path works in the same run)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.ops.producing import produce
from tests.integration.conftest import Stack, handled_total, metric_total, wait_for

pytestmark = pytest.mark.timeout(240)

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EMAIL = "eve.private@example.org"


def purchase(customer: str, n: int, ts: int, **extra: Any) -> dict[str, Any]:
    return {"event_id": f"{customer}-o{n}", "customer_id": customer, "ts": ts,
            "order_id": f"{customer}-{n}", "amount": 10.0, "items": 1, "category": "books",
            "channel": "web", **extra}  # fmt: skip


def privacy(customer: str, action: str, ts: int) -> dict[str, Any]:
    return {"event_id": f"{customer}-{action}", "customer_id": customer, "ts": ts,
            "action": action}  # fmt: skip


async def send_raw(
    stack: Stack, topic: str, records: list[tuple[bytes | None, bytes, int]]
) -> None:
    """(key, value, partition) records, as a producer that sets the partition itself."""
    await produce(stack.bootstrap, [(stack.topic(topic), k, v, p) for k, v, p in records])


def partition_of(customer: str, partitions: int) -> int:
    """The partition a Java-client producer puts the customer's keyed messages on."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(customer.encode(), every, every))


def test_nothing_of_an_erased_or_opted_out_customer_reaches_dead_letters(
    stack_factory: Any,
) -> None:
    stack: Stack = stack_factory(partitions=2)
    worker = stack.worker()
    history = [("purchases", purchase(c, n, T0 + n * DAY)) for c in ("eve", "ann", "bob")
               for n in range(3)]  # fmt: skip
    asyncio.run(stack.produce(history))
    wait_for(lambda: all(worker.get(f"/customers/{c}")[0] == 200 for c in ("eve", "ann", "bob")))

    asyncio.run(
        stack.produce(
            [
                ("privacy", privacy("eve", "erase", T0 + 5 * DAY)),
                ("privacy", privacy("ann", "opt_out", T0 + 5 * DAY)),
            ]
        )
    )
    wait_for(
        lambda: worker.get("/customers/eve")[0] == 404 and worker.get("/customers/ann")[0] == 404
    )
    handled = handled_total([worker])

    # Invalid events that carry personal data, all naming eve (erased) or ann (opted out).
    old_invalid = orjson.dumps(purchase("eve", 7, T0 + DAY, email=EMAIL) | {"amount": -1})
    new_invalid = orjson.dumps(purchase("ann", 8, T0 + 9 * DAY, email=EMAIL) | {"amount": -1})
    truncated = b'{"event_id": "x", "customer_id": "eve", "email": "' + EMAIL.encode()
    mismatched = orjson.dumps(purchase("eve", 9, T0 + 9 * DAY, email=EMAIL))
    valid_later_ann = orjson.dumps(purchase("ann", 10, T0 + 10 * DAY, email=EMAIL))
    eve_p, ann_p, bob_p = (partition_of(c, 2) for c in ("eve", "ann", "bob"))
    suppressed = [
        (b"eve", old_invalid, eve_p),  # keyed, invalid, older than the erasure
        (b"ann", new_invalid, ann_p),  # keyed, invalid, newer than the opt-out
        # unkeyed, broken JSON, on the other partition: customer_id read from the bytes
        (None, truncated, 1 - eve_p),
        (b"bob", mismatched, bob_p),  # key names bob, the payload eve (a key mismatch)
        (b"ann", valid_later_ann, ann_p),  # valid, but ann opted out
    ]
    # The control: bob's invalid event is dead-lettered as always.
    control = orjson.dumps(purchase("bob", 11, T0 + 6 * DAY) | {"amount": -5})
    records = [*suppressed, (b"bob", control, bob_p)]
    asyncio.run(send_raw(stack, "purchases", records))
    wait_for(lambda: handled_total([worker]) >= handled + len(records), timeout=90)

    dead = asyncio.run(
        stack.consume(
            "dead-letters",
            until=lambda rs: any("bob-o11" in str(r["value"]) for r in rs),
        )
    )
    assert any("bob-o11" in str(r["value"]) for r in dead), "the control was not dead-lettered"
    text = orjson.dumps([r["value"] for r in dead]).decode()
    assert EMAIL not in text and '"eve"' not in text and '"ann"' not in text, text
    assert len(dead) == 1

    assert metric_total(worker, "segmenter_events_rejected_total", reason="erased") == 3
    assert metric_total(worker, "segmenter_events_rejected_total", reason="opted_out") == 2
    assert metric_total(worker, "segmenter_dead_letters_total") == 1
    assert worker.get("/customers/ann")[0] == 404  # the valid later event was not applied
    assert EMAIL not in worker.log_path.read_text(errors="replace")
    # Nothing names them on the outputs after the requests either.
    changes = asyncio.run(stack.consume("segment-changes", until=lambda rs: False, timeout=3))
    after = [r for r in changes if r["key"] in ("eve", "ann") and r["value"]["current"] is not None]
    assert all(r["value"]["ts"] < "2026-01-06" for r in after)


def test_an_invalid_message_off_its_customers_partition_meets_the_owners_gate(
    stack_factory: Any,
) -> None:
    """Two workers. An erased customer's invalid, unkeyed message (e-mail inside)
    lands on partitions the other worker holds, which cannot check the erasure: it
    goes through the repartition topic to the worker that holds the customer's
    partition, which drops it. Another customer's invalid message takes the same
    hop and is dead-lettered there, naming the topic, partition, offset and key it
    was produced with."""
    stack: Stack = stack_factory(partitions=4)
    workers = [stack.worker(name, start=False) for name in ("w1", "w2")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.wait_ready()
    eve_p, bob_p = partition_of("eve", 4), partition_of("bob", 4)
    history = [
        ("purchases", purchase(c, n, T0 + n * DAY)) for c in ("eve", "bob") for n in range(2)
    ]
    asyncio.run(stack.produce(history))
    wait_for(lambda: all(workers[0].get(f"/customers/{c}")[0] == 200 for c in ("eve", "bob")))
    asyncio.run(stack.produce([("privacy", privacy("eve", "erase", T0 + 5 * DAY))]))
    wait_for(lambda: workers[0].get("/customers/eve")[0] == 404)
    handled = handled_total(workers)

    invalid = orjson.dumps(purchase("eve", 7, T0 + 9 * DAY, email=EMAIL) | {"amount": -1})
    # Every partition but eve's: two of them are the other worker's.
    records = [(None, invalid, p) for p in range(4) if p != eve_p]
    control = orjson.dumps(purchase("bob", 8, T0 + 9 * DAY) | {"amount": -5})
    bob_elsewhere = (bob_p + 1) % 4
    asyncio.run(send_raw(stack, "purchases", [*records, (None, control, bob_elsewhere)]))
    wait_for(lambda: handled_total(workers) >= handled + len(records) + 1, timeout=90)

    dead = asyncio.run(
        stack.consume("dead-letters", until=lambda rs: any("bob-o8" in str(r["value"]) for r in rs))
    )
    text = orjson.dumps([r["value"] for r in dead]).decode()
    assert EMAIL not in text and '"eve"' not in text, text
    (letter,) = [r["value"] for r in dead]
    assert letter["source_topic"] == stack.topic("purchases")
    assert (letter["partition"], letter["key"]) == (bob_elsewhere, None)
    assert (
        letter["event_id"] == f"dlq:{stack.topic('purchases')}:{bob_elsewhere}:{letter['offset']}"
    )
    assert letter["error"]["reason"] == "schema"
    rejected = sum(
        metric_total(w, "segmenter_events_rejected_total", topic="purchases", reason="erased")
        for w in workers
    )
    assert rejected == len(records)
    assert not any(EMAIL in w.log_path.read_text(errors="replace") for w in workers)
