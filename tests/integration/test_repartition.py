"""Events from kcat (librdkafka), keyed with its default partitioner and unkeyed,
end as one whole record per customer, on two workers.

librdkafka's default partitioner is CRC32-based, so most keyed messages land
on another partition than the Java client's murmur2 would give; unkeyed ones
land anywhere. The workers reroute them by ``customer_id`` through the
repartition topic: every customer's features equal the pandas reference,
each customer has a record on one partition only (the changelog says so),
``GET /customers/{id}`` answers the same from either worker, nothing is
dead-lettered, and ``segmenter_events_repartitioned_total`` counts exactly
the messages kcat placed off their customer's partition. An unkeyed ``erase``
sent by kcat reaches the customer's record.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from models.eventtime import MS_PER_DAY, format_ts, parse_ts
from streams.worker.repartition import partition_for
from tests.integration.conftest import Stack, Worker, metric_total, wait_for
from tests.integration.fault.conftest import feature_mismatches, history, read_topic
from tests.integration.kcat import kcat_produce, require_kcat
from tests.integration.rerouting import expected_reroutes, misplaced_records

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# How each topic reaches the broker: (client, key, partitioner).
PRODUCERS = {
    "browsing": "kcat keyed, librdkafka's default partitioner",
    "purchases": "kcat unkeyed",
    "profiles": "kcat unkeyed",
    "feedback": "kcat keyed, partitioner=murmur2_random",
    "support": "aiokafka keyed (murmur2)",
}


def produce(stack: Stack, topic: str, events: list[dict[str, Any]]) -> None:
    """Send ``events`` of ``topic`` the way :data:`PRODUCERS` says."""
    full = stack.topic(topic)
    if topic == "browsing":
        kcat_produce(stack.bootstrap, full, events)
    elif topic in ("purchases", "profiles"):
        kcat_produce(stack.bootstrap, full, events, keyed=False)
    elif topic == "feedback":
        kcat_produce(stack.bootstrap, full, events, partitioner="murmur2_random")
    else:
        asyncio.run(stack.produce([(topic, event) for event in events]))


def produce_day_by_day(
    stack: Stack, events: list[tuple[str, dict[str, Any]]], workers: list[Worker]
) -> None:
    """Live traffic: each day of the history is produced once the workers have read
    the days before (an unkeyed producer's backlog is another matter: see
    docs/delivery.md, "Rerouted messages")."""
    days: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for topic, event in events:
        day = parse_ts(event["ts"]) // MS_PER_DAY
        days.setdefault(day, {}).setdefault(topic, []).append(event)
    sent = 0
    for _, topics in sorted(days.items()):
        for topic, batch in topics.items():
            produce(stack, topic, batch)
            sent += len(batch)
        wait_for(lambda sent=sent: consumed(workers) >= sent, timeout=60, interval=0.2)


def consumed(workers: list[Worker]) -> float:
    """Input messages the workers have read (the repartition topic's not counted)."""
    return sum(
        metric_total(w, "segmenter_events_consumed_total", topic=topic)
        for w in workers
        for topic in PRODUCERS
    )


def wait_settled(workers: list[Worker], expected: dict[str, Any], timeout: float) -> None:
    """Until every worker serves every customer's reference features (else say how not)."""
    deadline = time.monotonic() + timeout
    while True:
        differences = [d for w in workers for d in feature_mismatches(w, expected)]
        if not differences:
            return
        if time.monotonic() > deadline:
            counters = {
                name: {w.port: metric_total(w, name) for w in workers}
                for name in (
                    "segmenter_events_consumed_total",
                    "segmenter_events_processed_total",
                    "segmenter_events_duplicate_total",
                    "segmenter_events_rejected_total",
                    "segmenter_events_repartitioned_total",
                    "segmenter_events_held",
                )
            }
            raise AssertionError(
                f"{len(differences)} differences after {timeout}s, e.g. {differences[:8]}; "
                f"{counters}\n{workers[0].log_tail(20)}"
            )
        time.sleep(2.0)


def test_kcat_events_keyed_and_unkeyed_end_as_one_record_per_customer(
    stack_factory: Callable[..., Stack],
) -> None:
    require_kcat()
    stack = stack_factory()
    w1 = stack.worker("w1")
    w2 = stack.worker("w2")
    w1.wait_ready()  # (again: w2's arrival rebalanced the group)
    hist = history(customers=40, days=20, seed=11)
    produce_day_by_day(stack, hist.events, [w1, w2])
    counts = Counter(topic for topic, _ in hist.events)

    wait_settled([w1, w2], hist.expected, timeout=180)

    # Exactly the messages placed off their customer's partition were rerouted,
    # and each event was applied once.
    rerouted = expected_reroutes(stack, counts)
    assert rerouted[("browsing", "wrong_partition")] > counts["browsing"] / 2
    assert rerouted[("purchases", "unkeyed")] > 0 and rerouted[("profiles", "unkeyed")] > 0
    workers = [w1, w2]
    for topic in counts:
        for reason in ("unkeyed", "wrong_partition"):
            measured = sum(
                metric_total(w, "segmenter_events_repartitioned_total", topic=topic, reason=reason)
                for w in workers
            )
            assert measured == rerouted[(topic, reason)], (topic, reason, PRODUCERS[topic])
        processed = sum(
            metric_total(w, "segmenter_events_processed_total", topic=topic) for w in workers
        )
        assert processed == counts[topic], topic
    # (murmur2_random in librdkafka places keys like the Java client: no hop.)
    assert not any(topic == "feedback" for topic, _ in rerouted)
    assert asyncio.run(read_topic(stack, "dead-letters", timeout=3)) == []

    # One record per customer, on the customer's partition.
    assert misplaced_records(stack, hist.expected) == {}
    # Either worker answers for any customer, with the same document.
    for customer_id in sorted(hist.expected)[:10]:
        s1, body1 = w1.get(f"/customers/{customer_id}")
        s2, body2 = w2.get(f"/customers/{customer_id}")
        assert s1 == s2 == 200 and body1 == body2

    # An unkeyed erase, sent by kcat to a partition that is not the customer's.
    customer_id = sorted(hist.expected)[0]
    home = partition_for(customer_id.encode(), stack.partitions)
    erase = {
        "event_id": f"erase-{customer_id}",
        "customer_id": customer_id,
        "ts": format_ts(hist.clock_ms + MS_PER_DAY),
        "action": "erase",
    }
    kcat_produce(
        stack.bootstrap,
        stack.topic("privacy"),
        [erase],
        keyed=False,
        partition=(home + 1) % stack.partitions,
    )
    wait_for(lambda: all(w.get(f"/customers/{customer_id}")[0] == 404 for w in workers), timeout=60)
    confirmations = asyncio.run(
        stack.consume("privacy-confirmations", until=lambda rs: len(rs) >= 1, timeout=30)
    )
    assert [(c["value"]["customer_id"], c["value"]["status"]) for c in confirmations] == [
        (customer_id, "done")
    ]
    assert confirmations[0]["partition"] == home
    assert (
        sum(
            metric_total(
                w, "segmenter_events_repartitioned_total", topic="privacy", reason="unkeyed"
            )
            for w in workers
        )
        == 1
    )
    for other in sorted(hist.expected)[1:4]:  # nobody else was touched
        assert w1.get(f"/customers/{other}")[0] == 200


def test_the_partition_check_agrees_with_librdkafkas_murmur2_random(
    stack_factory: Callable[..., Stack],
) -> None:
    """kcat with ``partitioner=murmur2_random`` places every key where the worker
    expects it; with librdkafka's default (CRC32) most keys land elsewhere."""
    require_kcat()
    stack = stack_factory()
    ids = [f"cust-{i}" for i in range(400)] + ["é-ü", "a" * 150, "42"]
    events = [{"event_id": f"e-{c}", "customer_id": c} for c in ids]
    kcat_produce(stack.bootstrap, stack.topic("purchases"), events, partitioner="murmur2_random")
    kcat_produce(stack.bootstrap, stack.topic("browsing"), events)
    for topic, agree in (("purchases", len(ids)), ("browsing", None)):
        records = asyncio.run(stack.consume(topic, until=lambda rs: len(rs) >= len(ids)))
        placed = sum(
            record["partition"] == partition_for(record["key"].encode(), stack.partitions)
            for record in records
        )
        if agree is not None:
            assert placed == agree
        else:
            assert placed < len(ids) * 0.4  # about one in four by chance


def test_an_unkeyed_backlog_read_by_two_workers_loses_nothing_to_late(
    stack_factory: Callable[..., Stack],
) -> None:
    """A backfill from producers that do not key by the Java client's partitioner,
    sent in one burst before the workers start: the workers read the source
    partitions at different speeds, so a customer's rerouted events reach their
    partition out of event-time order unless the workers merge them by how far each
    source partition has been read. Nothing is dead-lettered as ``late`` (the
    events are at most days apart, well inside what a live producer sends), and
    every customer's features equal the pandas reference."""
    require_kcat()
    stack = stack_factory()
    hist = history(customers=40, days=20, seed=11)
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for topic, event in hist.events:
        by_topic.setdefault(topic, []).append(event)
    for topic, events in by_topic.items():  # the whole history, before any worker runs
        produce(stack, topic, events)
    counts = Counter(topic for topic, _ in hist.events)
    rerouted = expected_reroutes(stack, counts)
    assert rerouted[("purchases", "unkeyed")] > counts["purchases"] / 2

    workers = [stack.worker(name, start=False) for name in ("w1", "w2")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.wait_ready()
    wait_settled(workers, hist.expected, timeout=180)

    dead = asyncio.run(read_topic(stack, "dead-letters", timeout=3))
    reasons = Counter(d["error"]["reason"] for d in dead)
    assert dead == [], f"dead-lettered: {dict(reasons)} of {dict(counts)}"
    for topic in counts:
        processed = sum(
            metric_total(w, "segmenter_events_processed_total", topic=topic) for w in workers
        )
        assert processed == counts[topic], topic
    assert misplaced_records(stack, hist.expected) == {}
