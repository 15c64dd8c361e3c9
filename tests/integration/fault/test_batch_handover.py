"""A rebalance and a SIGTERM while batches are in flight and events are held.

The batch consumer path's riskiest case (streams/faust_adapter.py): in a
backlog, the other topics run ahead of browsing and their events wait in the
event-time order while fetches keep coming. A second worker joins (the first
hands its held events back uncommitted, commits what is committed, and gives
partitions away), then the first worker is stopped with SIGTERM in the
middle of its share of the backlog. The remaining
worker must end with every customer's features equal to the pandas reference
(nothing lost, nothing counted twice), every input offset committed, and a
consistent output stream: no event id emitted with conflicting content, and
per customer an unbroken chain of segment changes ending at the segment it
serves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.integration.conftest import Stack, handled_total, metric_total, wait_for
from tests.integration.fault.conftest import (
    history,
    output_conflicts,
    read_topic,
    segment_chain_breaks,
    served_segments,
    wait_committed,
    wait_features,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

SEGMENT_FIELDS = ("customer_id", "segment_type", "previous", "current")
CHURN_FIELDS = ("customer_id", "level", "previous_level")


def held(worker: object) -> float:
    return metric_total(worker, "segmenter_events_held")  # type: ignore[arg-type]


def test_rebalance_and_sigterm_with_held_events_lose_nothing(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    hist = history(customers=300, days=60, seed=11)
    total = len(hist.events)
    # Every other topic's whole history before browsing's (90 % of the events):
    # those events wait in the event-time order until browsing catches up with
    # them, so events are held during most of the backlog.
    browsing = [event for event in hist.events if event[0] == "browsing"]
    others = [event for event in hist.events if event[0] != "browsing"]
    asyncio.run(stack.produce(others + browsing))

    w1 = stack.worker("w1")
    wait_for(lambda: held(w1) > 0, timeout=120, interval=0.1)
    w2 = stack.worker("w2", start=False).start()  # joins: a rebalance while w1 holds events
    w2.wait_ready(timeout=120)
    wait_for(lambda: handled_total([w2]) > 0, timeout=120, interval=0.2)
    handed_back = metric_total(w1, "segmenter_events_requeued_total")
    # Stop w1 at once: it is in the middle of its partitions' backlog.
    assert handled_total([w1, w2]) < total, "the backlog ended before the stop"
    started = time.monotonic()
    w1.stop(timeout=60)
    assert w1.proc is not None and w1.proc.returncode == 0, w1.log_tail()
    assert time.monotonic() - started < 30

    wait_features(w2, hist.expected, timeout=240)
    wait_committed(stack, timeout=60)
    # The case under test happened: w1 handed held events back at the rebalance.
    assert handed_back > 0

    time.sleep(2)  # let the last outputs leave the producer
    changes = asyncio.run(read_topic(stack, "segment-changes"))
    churn = asyncio.run(read_topic(stack, "churn-risk"))
    assert output_conflicts(changes, SEGMENT_FIELDS) == []
    assert output_conflicts(churn, CHURN_FIELDS) == []
    assert segment_chain_breaks(changes, served_segments(w2, sorted(hist.expected))) == []
