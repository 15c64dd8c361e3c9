"""A customer's changes reach the output topics in the order they were decided,
whichever path decided them: an ingest batch or the sweep (no Kafka).

A consumer (and a compacted topic) takes a key's last record as the current
segment. The sweep's batches commit in the same queue as ingest batches; their
outputs must not wait for the group commit while a later ingest batch's
outputs of the same customer go to the producer first.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from models.eventtime import MS_PER_DAY
from streams.codec import decode_state
from streams.worker.sweep import PartitionSweep
from tests.streams.conftest import Feeder, RecordingTopic

DAY = MS_PER_DAY
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def buy(customer: str, event_id: str, ts: int, amount: float = 40.0) -> bytes:
    return orjson.dumps(
        {"event_id": event_id, "customer_id": customer, "ts": ts, "order_id": event_id,
         "amount": amount}
    )  # fmt: skip


class StalledTopic(RecordingTopic):
    """An output topic whose first send waits until released (a full producer batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.calls = 0

    async def send(self, key: bytes | None = None, value: bytes | None = b"", **kw: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            await self.release.wait()
        await super().send(key, value, **kw)


async def test_a_sweep_change_is_not_overtaken_by_the_next_ingest_change(make_app: Any) -> None:
    app = make_app()
    pipeline, rt = app.pipeline, app.segmenter
    feed = Feeder(app)
    # c1 buys on days 0 and 10 (active); c2's purchase on day 60 moves the clock:
    # at day 60, c1 has been silent for 50 days (at risk, the sweep's decision).
    assert await feed.put("purchases", buy("c1", "o1", T0), key=b"c1")
    assert await feed.put("purchases", buy("c1", "o2", T0 + 10 * DAY), key=b"c1")
    assert await feed.put("purchases", buy("c2", "o3", T0 + 60 * DAY), key=b"c2")

    stalled = StalledTopic()
    pipeline.outputs["segment-changes"] = stalled
    # A batch whose outputs wait in the producer, so the next commits queue up.
    c3 = asyncio.ensure_future(feed.put("purchases", buy("c3", "o4", T0 + 60 * DAY), key=b"c3"))
    while stalled.calls == 0:
        await asyncio.sleep(0)
    # The sweep brings c1 up to day 60 (active -> at_risk); its commit queues.
    sweep = asyncio.ensure_future(
        pipeline.review_partition(["c1"], 0, PartitionSweep(clock_ms=rt.clock.now_ms))
    )
    await asyncio.sleep(0.01)
    # Then c1 buys again (at_risk -> reactivated), in a later batch.
    c1 = asyncio.ensure_future(
        feed.put("purchases", buy("c1", "o5", T0 + 60 * DAY + 1000), key=b"c1")
    )
    await asyncio.sleep(0.05)
    stalled.release.set()
    assert await asyncio.wait_for(c3, 5) and await asyncio.wait_for(c1, 5)
    await asyncio.wait_for(sweep, 5)

    lifecycle = [
        (value["previous"], value["current"])
        for key, value in stalled.sent
        if key == b"c1" and value["segment_type"] == "lifecycle"
    ]
    assert lifecycle == [("active", "at_risk"), ("at_risk", "reactivated")]
    state = decode_state(pipeline.customers.get("c1", 0))
    assert state is not None and state["seg"]["lifecycle"]["current"] == "reactivated"
