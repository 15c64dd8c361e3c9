"""End to end on the real broker: events in, customer over HTTP, segment changes out."""

from __future__ import annotations

import time

from schemas import validate_output
from tests.integration.conftest import Stack, wait_for

DAY = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_purchase_creates_customer_and_lifecycle_segment(stack: Stack) -> None:
    worker = stack.worker()
    t0 = now_ms() - 3 * DAY
    await stack.produce(
        [
            ("profiles", {"event_id": "p1", "customer_id": "alice", "ts": t0,
                          "attributes": {"country": "DE", "plan": "pro"}}),
            ("browsing", {"event_id": "b1", "customer_id": "alice", "ts": t0 + 1000,
                          "session_id": "s1", "action": "product_view", "category": "shoes"}),
            ("purchases", {"event_id": "o1", "customer_id": "alice", "ts": t0 + 60_000,
                           "order_id": "A-1", "amount": 120.5, "items": 2, "category": "shoes",
                           "channel": "web"}),
        ]
    )  # fmt: skip

    def alice() -> dict | None:
        status, body = worker.get("/customers/alice")
        return body if status == 200 and body["features"]["orders"] == 1 else None

    body = wait_for(alice, timeout=60)
    features = body["features"]
    assert features["revenue"] == 120.5
    assert features["frequency"] == 0 and features["recency"] == 0
    assert features["profile"]["country"] == "DE"
    assert body["segments"]["lifecycle"] == "new"

    records = await stack.consume(
        "segment-changes",
        until=lambda rs: any(
            r["value"]["segment_type"] == "lifecycle" and r["value"]["current"] == "new" for r in rs
        ),
    )
    lifecycle = [r for r in records if r["value"]["segment_type"] == "lifecycle"]
    assert lifecycle[-1]["key"] == "alice"
    assert lifecycle[-1]["value"]["customer_id"] == "alice"
    assert lifecycle[-1]["value"]["current"] == "new"
    seqs = [r["value"]["seq"] for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for record in records:
        validate_output("segment-changes", record["value"])


async def test_unknown_customer_is_404_and_health_endpoints_answer(stack: Stack) -> None:
    worker = stack.worker()
    status, _ = worker.get("/customers/nobody")
    assert status == 404
    assert worker.get("/health")[0] == 200
    assert worker.get("/ready") == (
        200,
        {"ready": True, "checks": {"partitions_assigned": True, "tables_recovered": True,
                                   "model_loaded": True}},
    )  # fmt: skip
    assert "segmenter_events_consumed_total" in worker.text("/metrics")
