"""The clock-ticks agent's daily pass (streams/worker/daily_sweep.py), run through
Faust's test context."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from streams.worker.daily_sweep import GO_ON, START
from tests.streams.conftest import purchase
from tests.streams.worker.test_pipeline import Message

pytestmark = pytest.mark.timeout(20)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000


async def handled(app: Any, ts: int, offset: int = 0) -> None:
    submission = await app.pipeline.submit(
        "purchases", [Message(offset, purchase(f"o{offset}", ts))]
    )
    assert await asyncio.wait_for(submission.done, 5)


async def tick(app: Any, value: bytes) -> None:
    """One tick of partition 0 through the agent; returns once it is handled."""
    rt = app.segmenter
    agent = next(a for a in app.agents.values() if a.name.endswith("clock-ticks"))
    stats_before = rt.partition_stats.get(0)
    async with agent.test_context() as context:
        await context.put(value, partition=0)
        for _ in range(50):  # (put returns once the agent took the tick)
            if rt.partition_stats.get(0) is not stats_before:
                break
            await asyncio.sleep(0.01)


async def test_a_finished_pass_wakes_the_training_flush(app: Any) -> None:
    """The learner closes a day once every partition's pass of the next one is
    done: the training batch that says so goes at once, not at the next
    half second (streams/worker/wakeup.py)."""
    rt = app.segmenter
    await handled(app, T0 + DAY + 5)
    assert not await rt.wakeups.training.wait(0.01)
    assert await rt.wakeups.clock.wait(0.01)  # (the commit of the new day)
    await tick(app, START)
    assert rt.reviewed_through(0) == (T0 + DAY) // DAY
    assert await rt.wakeups.training.wait(0.01)
    # While events wait for the model, the clock loop looks at once whether the
    # partition's next day is there to start (a pass may span a day's events).
    assert rt.pacing() and await rt.wakeups.clock.wait(0.01)


async def test_a_tick_that_moves_on_an_ended_pass_starts_none(app: Any) -> None:
    """Ticks sent while a pass ran (one per loop round) arrive after it ended:
    each would start another full pass of the partition."""
    rt = app.segmenter
    await handled(app, T0 + DAY + 5)
    await tick(app, GO_ON)
    assert rt.reviewed_through(0) == -1  # no pass
    await tick(app, START)
    assert rt.reviewed_through(0) == (T0 + DAY) // DAY


async def test_a_pass_that_runs_a_day_earlier_than_asked_is_started_again(app: Any) -> None:
    """The clock loop asks for a pass at the day it sees; the pass takes the
    partition's clock again when it starts, and an event read meanwhile (a
    rerouted one, say) may hold it a day back. The loop must ask again for the
    day that was not reached: the learner closes a day only once every
    partition's pass reached it, and the workers wait for the learner (the
    two-worker rerouting test stalled 60 s a day on this)."""
    rt = app.segmenter
    passes = app.passes
    await handled(app, T0 + DAY + 5)  # the partition's clock is in day 1
    model = rt.assigner_signature()
    day_asked = (T0 + 2 * DAY) // DAY
    passes.started[0] = (day_asked, time.monotonic(), model)  # the loop saw day 2
    await tick(app, START)
    assert rt.reviewed_through(0) == day_asked - 1  # the pass reached day 1 only
    assert passes.due(0, day_asked, model, time.monotonic())
    # The loop asks again; once the pass of day 2 is done, none is due before day 3.
    await handled(app, T0 + 2 * DAY + 5, offset=1)
    passes.started[0] = (day_asked, time.monotonic(), model)
    await tick(app, START)
    assert rt.reviewed_through(0) == day_asked
    assert not passes.due(0, day_asked, model, time.monotonic())
