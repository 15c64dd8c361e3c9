"""The clock-ticks agent's daily pass (streams/worker/daily_sweep.py), run through
Faust's test context."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.streams.conftest import purchase

pytestmark = pytest.mark.timeout(20)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000


async def test_a_finished_pass_wakes_the_training_flush(app: Any) -> None:
    """The learner closes a day once every partition's pass of the next one is
    done: the training batch that says so goes at once, not at the next
    half second (streams/worker/wakeup.py)."""
    rt = app.segmenter
    ingest = await app.pipeline.submit("purchases", [_message(T0 + DAY + 5)])
    assert await asyncio.wait_for(ingest.done, 5)
    assert not await rt.wakeups.training.wait(0.01)
    agent = next(a for a in app.agents.values() if a.name.endswith("clock-ticks"))
    async with agent.test_context() as context:
        await context.put(b"{}", partition=0)
        for _ in range(200):  # (put returns once the agent took the tick)
            if 0 in rt.partition_stats:
                break
            await asyncio.sleep(0.01)
    assert rt.reviewed_through(0) == (T0 + DAY) // DAY
    assert await rt.wakeups.training.wait(0.01)


def _message(ts: int) -> Any:
    from tests.streams.worker.test_pipeline import Message

    return Message(0, purchase("o1", ts))
