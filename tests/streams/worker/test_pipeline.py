"""The pipeline's commit order: what a batch writes is never overwritten by an
older batch's state, however long the older batch waits for the producer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from streams.codec import decode_state
from tests.streams.conftest import RecordingTopic, purchase

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000


@dataclass
class Message:
    """The fields of an input record the pipeline reads."""

    offset: int
    value: bytes
    key: bytes = b"c1"
    topic: str = "purchases"
    partition: int = 0
    timestamp: int = T0  # milliseconds, as in an aiokafka record


def purchase_message(offset: int, ts: int) -> Message:
    return Message(offset, purchase(f"o{offset}", ts))


class StalledTopic(RecordingTopic):
    """An output topic whose first send waits until released (a producer stall)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.calls = 0

    async def send(self, key: bytes | None = None, value: bytes = b"", **kw: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            await self.release.wait()
        await super().send(key, value, **kw)


async def test_a_batch_that_waits_for_the_producer_is_not_overtaken(app: Any) -> None:
    pipeline = app.pipeline
    stalled = StalledTopic()
    pipeline.outputs["segment-changes"] = stalled
    # The first purchase makes c1 "new": its segment change stalls in the producer.
    submitting = asyncio.ensure_future(pipeline.submit("purchases", [purchase_message(0, T0)]))
    while stalled.calls == 0:
        await asyncio.sleep(0)
    # Meanwhile another batch of the same customer is processed and would commit.
    second = await pipeline.submit("purchases", [purchase_message(1, T0 + DAY)])
    await asyncio.sleep(0.05)
    stalled.release.set()
    first = await submitting
    assert await asyncio.wait_for(first.done, 5) and await asyncio.wait_for(second.done, 5)
    state = decode_state(pipeline.customers.get("c1", 0))
    assert state is not None
    view = app.segmenter.processor.view("c1", state, T0 + DAY)
    assert view["features"]["orders"] == 2  # the second batch's state, not the first's
    assert state["off"]["purchases"] == [0, 1]


async def test_an_event_that_fails_half_way_leaves_nothing_of_itself_in_the_batch(
    app: Any,
) -> None:
    """The batch keeps one decoded state per customer (streams.worker.working_set): an
    event whose processing raises after changing it is rolled back, and the
    customer's other events of the same batch are kept."""
    pipeline = app.pipeline
    processor = app.segmenter.processor
    handle = processor.handle

    def fails_after_changing_the_state(*args: Any, **kwargs: Any) -> Any:
        result = handle(*args, **kwargs)  # features, dedup memory and segments moved on
        if args[3]["event_id"] == "o1":
            raise RuntimeError("a bug after the state was changed")
        return result

    processor.handle = fails_after_changing_the_state
    messages = [purchase_message(offset, T0 + offset * DAY) for offset in range(3)]
    submission = await pipeline.submit("purchases", messages)
    assert await asyncio.wait_for(submission.done, 5)
    state = decode_state(pipeline.customers.get("c1", 0))
    assert state is not None
    view = app.segmenter.processor.view("c1", state, T0 + 2 * DAY)
    assert view["features"]["orders"] == 2  # o0 and o2; nothing of o1
    assert (
        app.segmenter.metrics.sample("segmenter_events_processed_total", topic="purchases") == 2.0
    )


async def test_a_commit_publishes_the_partition_clock_its_events_moved(app: Any) -> None:
    """Offsets are acked only after the partition's clock is on the stream-clock
    topic: a worker that restarts without new events knows how far the stream is."""
    pipeline = app.pipeline
    first = await pipeline.submit("purchases", [purchase_message(0, T0 + 3 * DAY)])
    assert await asyncio.wait_for(first.done, 5)
    clock_records = pipeline.outputs["stream-clock"].sent
    assert [(key, value["clock_ms"]) for key, value in clock_records] == [(b"p0", T0 + 3 * DAY)]
    # An older event does not move the clock: nothing more to publish.
    second = await pipeline.submit("purchases", [purchase_message(1, T0 + DAY)])
    assert await asyncio.wait_for(second.done, 5)
    assert len(clock_records) == 1
    assert app.segmenter.metrics.sample("segmenter_outputs_total", topic="stream-clock") is None


async def test_a_restarted_worker_never_publishes_a_clock_behind_the_topic(app: Any) -> None:
    rt = app.segmenter
    rt.clock.heard("p0", T0 + 9 * DAY)  # what the partition's previous owner published
    submission = await app.pipeline.submit("purchases", [purchase_message(0, T0 + DAY)])
    assert await asyncio.wait_for(submission.done, 5)
    assert app.pipeline.outputs["stream-clock"].sent == []
    assert rt.partition_record(0)["clock_ms"] == T0 + 9 * DAY  # (the timer's record too)


async def test_a_commit_that_moves_a_partition_into_a_new_day_wakes_the_clock_loop(
    app: Any,
) -> None:
    """While events wait for the cluster model, the partition's pass of the new
    day starts at once (not at the next second): the model's next day waits
    for it (streams/worker/wakeup.py)."""
    pipeline, wakeups = app.pipeline, app.segmenter.wakeups
    first = await pipeline.submit("purchases", [purchase_message(0, T0 + 3600_000)])
    assert await asyncio.wait_for(first.done, 5)
    assert app.segmenter.pacing()
    assert await wakeups.clock.wait(0.01)
    later = await pipeline.submit("purchases", [purchase_message(1, T0 + 7200_000)])
    assert await asyncio.wait_for(later.done, 5)
    assert not await wakeups.clock.wait(0.01)  # same day: nothing to start
    next_day = await pipeline.submit("purchases", [purchase_message(2, T0 + DAY + 60_000)])
    assert await asyncio.wait_for(next_day.done, 5)
    assert await wakeups.clock.wait(0.01)


async def test_a_newer_cluster_model_wakes_the_release_of_held_events(app: Any) -> None:
    rt = app.segmenter
    assert rt.install_model({"snapshot": {"as_of_ms": T0}})
    assert await rt.wakeups.release.wait(0.01)
    assert rt.install_model({"snapshot": {"as_of_ms": T0}})  # the same day again
    assert not await rt.wakeups.release.wait(0.01)
    assert rt.install_model({"snapshot": {"as_of_ms": T0 + DAY}})
    assert await rt.wakeups.release.wait(0.01)
