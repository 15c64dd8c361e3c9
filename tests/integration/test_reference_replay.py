"""A simulated history replayed through the real broker matches pandas exactly.

Events are produced partly out of order (late by up to two days within their
topic), a share with RFC 3339 timestamps; the worker's features for every
customer must equal an independent pandas computation over the same events.
"""

from __future__ import annotations

import random

from models.eventtime import format_ts, parse_ts
from schemas import validate_output
from streams.tools.simulator import Simulation
from tests.integration.conftest import Stack, handled_total, metric_total, wait_for
from tests.reference import compare_features, reference_features

DAY = 86_400_000


def disorder(events: list[tuple[str, dict]], seed: int, share: float = 0.1) -> list:
    """Delay a share of events by up to two days of stream position (same topic)."""
    rng = random.Random(seed)
    keyed = []
    for position, (topic, event) in enumerate(events):
        delay = rng.uniform(0, 2 * DAY) if rng.random() < share else 0.0
        keyed.append((parse_ts(event["ts"]) + delay, position, topic, event))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [(topic, event) for _, _, topic, event in keyed]


async def test_replayed_history_matches_the_pandas_reference(stack: Stack) -> None:
    sim = Simulation(customers=100, days=60, seed=11, rfc3339_fraction=0.2)
    events = list(sim.events())
    produced = disorder(events, seed=3)
    assert produced != events  # some really are out of order
    worker = stack.worker()
    await stack.produce(produced)
    wait_for(lambda: handled_total([worker]) >= len(produced), timeout=300)

    clock_ms = max(parse_ts(e["ts"]) for _, e in events)
    expected = reference_features(events, clock_ms)
    mismatches: list[str] = []
    for customer_id, want in expected.items():
        status, body = worker.get(f"/customers/{customer_id}")
        assert status == 200, customer_id
        assert body["stream_clock"][:19] == format_ts(clock_ms)[:19]
        mismatches += [f"{customer_id}: {m}" for m in compare_features(body["features"], want)]
    assert mismatches == []
    assert len(expected) >= 90

    # Every event the worker emitted on the way validates against its schema.
    for topic in ("segment-changes", "churn-risk"):
        records = await stack.consume(topic, until=lambda rs: False, timeout=5)
        assert records, topic
        for record in records:
            validate_output(topic, record["value"])
    assert metric_total(worker, "segmenter_events_rejected_total") == 0
