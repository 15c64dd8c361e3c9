"""kill -9 while rerouted messages are in flight: nothing lost, nothing applied twice.

The whole history is produced by kcat, keyed by customer_id but placed by
librdkafka's default partitioner, so about three messages in four land off
their customer's partition and go through the repartition topic. The worker is
killed with SIGKILL twice: first while it forwards (forwards acknowledged,
their sources not committed yet), then, restarted on the same data dir, while
it applies forwards (some written to the state, not committed yet). Started a
third time, it forwards those sources a second time and reads the uncommitted
forwards again. Each customer's record remembers, per source topic-partition,
the source offset of the last rerouted message applied, so every copy counts
once, however old its event time: every customer's features equal the pandas
reference, each customer is one record on its own partition, nothing is
dead-lettered, outputs keep deterministic ids and unbroken chains, and every
input message and every forward ends committed.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from streams.topics import INPUT_TOPICS
from streams.worker.repartition import REPARTITION_TOPIC
from tests.integration.conftest import Stack, Worker, handled_total, metric_total, wait_for
from tests.integration.fault.conftest import (
    committed_lag,
    history,
    output_conflicts,
    read_topic,
    segment_chain_breaks,
    served_segments,
    wait_features,
)
from tests.integration.kcat import kcat_produce, require_kcat
from tests.integration.rerouting import expected_reroutes, misplaced_records

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SEGMENT_FIELDS = ("customer_id", "segment_type", "previous", "current")


def served_total(worker: Worker, name: str) -> float:
    """A metric's total on the worker's /metrics; 0 until it serves HTTP."""
    try:
        return metric_total(worker, name)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0.0


def test_sigkill_with_rerouted_messages_in_flight_loses_nothing_and_counts_nothing_twice(
    stack_factory: Callable[..., Stack],
) -> None:
    require_kcat()
    # Small batches, and each kill at the first poll of /metrics that shows
    # progress: the worker forwards, or applies, thousands of messages between
    # two polls (0.2-0.4 s under load), so waiting for 30-40 % let it finish
    # before the kill in 3 runs of 7.
    stack = stack_factory(SEGMENTER_BATCH_SIZE="100")
    hist = history(customers=40, days=30, seed=7)
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for topic, event in hist.events:
        by_topic.setdefault(topic, []).append(event)
    for topic, events in by_topic.items():  # a backlog: every topic at once
        kcat_produce(stack.bootstrap, stack.topic(topic), events)
    total = len(hist.events)
    rerouted = sum(
        expected_reroutes(stack, Counter({t: len(e) for t, e in by_topic.items()})).values()
    )
    assert rerouted > total / 2

    # Polled from the start, not from /ready: the worker is ready once its
    # partitions are assigned, and it forwarded the whole history before the
    # first poll after that in 2 runs of 3.
    worker = stack.worker("w1", start=False).start()
    forwarded = "segmenter_events_repartitioned_total"
    # 1. Killed while forwarding: sources forwarded but not committed yet.
    wait_for(lambda: served_total(worker, forwarded) >= rerouted * 0.05, timeout=150, interval=0.1)
    forwarded_at_kill = metric_total(worker, forwarded)
    worker.kill()
    assert worker.proc is not None and worker.proc.returncode == -9
    assert forwarded_at_kill < rerouted, "the worker forwarded everything before the kill"
    copies = len(asyncio.run(stack.consume_raw(stack.topic(REPARTITION_TOPIC), timeout=5)))
    # 2. Killed while applying forwards: some written to the state, not committed.
    worker.start()
    worker.wait_ready()
    wait_for(lambda: handled_total([worker]) >= total * 0.05, timeout=150, interval=0.1)
    handled_at_kill = handled_total([worker])
    worker.kill()
    assert handled_at_kill < total, "the worker finished before it could be killed"

    worker.start()  # same port, same data dir (RocksDB survives the kill)
    worker.wait_ready()
    needed = wait_features(worker, hist.expected, timeout=180)
    topics = (*INPUT_TOPICS, REPARTITION_TOPIC)
    wait_for(lambda: asyncio.run(committed_lag(stack, topics)) == 0, timeout=90, interval=1.0)

    duplicates = metric_total(worker, "segmenter_events_duplicate_total")
    twice = (
        len(asyncio.run(stack.consume_raw(stack.topic(REPARTITION_TOPIC), timeout=5))) - rerouted
    )
    print(
        f"\nfirst kill after {forwarded_at_kill:.0f}/{rerouted} forwarded, when the "
        f"repartition topic held {copies} forwards; second after {handled_at_kill:.0f}/"
        f"{total} handled; {twice} messages forwarded twice; {duplicates:.0f} copies "
        f"recognised after the last restart; features exact {needed:.0f} s after the restart"
    )
    assert twice > 0, "no source was forwarded twice: the kill did not test that"
    assert asyncio.run(read_topic(stack, "dead-letters", timeout=3)) == []
    assert misplaced_records(stack, hist.expected) == {}
    time.sleep(2)  # let the last output batch leave the producer
    changes = asyncio.run(read_topic(stack, "segment-changes"))
    assert output_conflicts(changes, SEGMENT_FIELDS) == []
    assert segment_chain_breaks(changes, served_segments(worker, sorted(hist.expected))) == []
