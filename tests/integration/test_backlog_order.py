"""A backlog is handled as if it had been lived through in order.

The whole 30-day history of 80 customers is on the input topics before any
worker starts, so the consumer reads purchases, browsing, support, feedback
and profiles at whatever speed each happens to go (a topic with few records is
read to its end while another is still at day 3). The workers hold each
partition's events until every topic of that partition has caught up to them
(:mod:`models.ordering`), evaluate each customer in their own event time with
a catch-up at every midnight (:meth:`CustomerProcessor.handle`), and sweep a
partition only up to the events it has handled.

So ``GET /customers/{id}`` must answer, for every customer:

* on one worker and on a pair of workers in one group, the same document;
* the document the worker's own code gives in-process when it is fed each
  customer's events one by one in event-time order and brought up to the
  final day at the end: what living through the history in order gives.

The model is frozen (published before the workers start, learning off) so
that the comparison is about order, not about which model version was current.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from models.clustering import SegmentAssigner
from models.eventtime import day_of, format_ts, parse_ts
from schemas import validate
from streams.settings import Settings
from streams.tools.simulator import Simulation
from streams.topics import INPUT_TOPICS
from streams.worker.app import build_runtime
from tests.integration.conftest import Stack, wait_for
from tests.integration.fault.conftest import committed_lag
from tests.integration.test_scale_out import (
    CUSTOMERS,
    DAYS,
    differences,
    frozen_model_message,
    frozen_single_and_pair,
    settled,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def in_order_reference(
    events: list[tuple[str, dict[str, Any]]], model: bytes
) -> dict[str, dict[str, Any]]:
    """customer -> document, from the worker's code fed the history in event-time order."""
    message = orjson.loads(model)
    assigner = SegmentAssigner.from_snapshot(message["snapshot"])
    params = None  # a frozen run publishes no churn model: workers score with the prior
    processor = build_runtime(Settings()).processor
    validated = [
        (topic, validate(topic, orjson.dumps(event), now_ms=int(time.time() * 1000)))
        for topic, event in events
    ]
    # The worker's order within a partition: time, then topic, then offset
    # (the order in which they were produced).
    rank = {topic: i for i, topic in enumerate(INPUT_TOPICS)}
    ordered = sorted(enumerate(validated), key=lambda x: (x[1][1]["ts"], rank[x[1][0]], x[0]))
    states: dict[str, Any] = {}
    for _, (topic, event) in ordered:
        cid = event["customer_id"]
        result = processor.handle(cid, states.get(cid), topic, event, assigner, params)
        assert result.status == "new", (cid, topic, result.status)
        states[cid] = result.state
    clock = max(event["ts"] for _, event in validated)
    for cid, state in states.items():
        processor.review(cid, state, day_of(clock), assigner, params)
    return {cid: processor.view(cid, state, clock, params) for cid, state in states.items()}


def test_a_backlog_gives_what_the_history_lived_in_order_gives(
    stack_factory: Callable[..., Stack],
) -> None:
    model = frozen_model_message()
    events = list(Simulation(customers=CUSTOMERS, days=DAYS, seed=31).events())
    customers = sorted({e["customer_id"] for _, e in events})
    final_clock = max(parse_ts(e["ts"]) for _, e in events)

    with frozen_single_and_pair(stack_factory, model, backlog=events) as (single, pair):
        workers = [*single.workers, *pair.workers]
        # Done: every input message committed (a count of handled messages
        # would include those read twice after the rebalance of the pair).
        for stack in (single, pair):
            wait_for(lambda s=stack: asyncio.run(committed_lag(s)) == 0, timeout=120)

        served = wait_for(
            lambda: settled(workers, customers, format_ts(final_clock)), timeout=90, interval=1.0
        )
    docs_a, docs_b1, docs_b2 = ({c: doc for c, (_, doc) in docs.items()} for docs in served)

    assert docs_b1 == docs_b2
    reference = in_order_reference(events, model)
    for name, docs in (("one worker", docs_a), ("two workers", docs_b1)):
        mismatches = {
            c: differences(docs[c], reference[c]) for c in customers if docs[c] != reference[c]
        }
        assert not mismatches, (
            f"{name}: {len(mismatches)} of {len(customers)} customers differ from the "
            "in-order reference: "
            + "; ".join(f"{c}: {d[:4]}" for c, d in list(mismatches.items())[:8])
        )
    # The comparison means something: customers moved through several
    # lifecycle stages and clusters.
    lifecycle = {doc["segments"].get("lifecycle") for doc in docs_a.values()}
    clusters = {doc["segments"].get("cluster") for doc in docs_a.values()}
    assert len(lifecycle - {None}) >= 3, lifecycle
    assert len(clusters - {None}) >= 2, clusters
