"""The worker loops that the previous step of the per-stream-day chain wakes
(streams/worker/wakeup.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from streams.worker.wakeup import Wakeup, install_loop

pytestmark = pytest.mark.timeout(10)


class App:
    """What ``install_loop`` uses of a Faust app: ``task`` and ``should_stop``."""

    def __init__(self) -> None:
        self.should_stop = False
        self.tasks: list[Any] = []

    def task(self, fun: Any) -> Any:
        self.tasks.append(fun)
        return fun


async def test_a_wakeup_set_before_the_wait_is_not_lost() -> None:
    wakeup = Wakeup()
    wakeup.set()  # (while the loop was still running its step)
    started = time.monotonic()
    assert await wakeup.wait(5.0)
    assert time.monotonic() - started < 1.0
    assert not await wakeup.wait(0.01)  # used up


async def test_a_woken_loop_runs_its_step_long_before_the_interval() -> None:
    app, wakeup, ran = App(), Wakeup(), asyncio.Event()

    async def step() -> None:
        ran.set()

    install_loop(app, 30.0, wakeup, step)
    loop = asyncio.ensure_future(app.tasks[0]())
    try:
        await asyncio.sleep(0.05)
        assert not ran.is_set()  # nothing before the interval unless woken
        wakeup.set()
        await asyncio.wait_for(ran.wait(), 1.0)
    finally:
        app.should_stop = True
        loop.cancel()


async def test_a_failing_step_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, calls = App(), []

    async def flaky_step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("broker away")
        app.should_stop = True

    install_loop(app, 0.01, Wakeup(), flaky_step)
    await asyncio.wait_for(app.tasks[0](), 2.0)  # returns once stopped
    assert len(calls) == 2
    assert "flaky_step failed" in caplog.text
