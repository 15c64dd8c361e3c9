"""Periodic worker loops that the step they wait for can wake at once.

A replay or a backlog that keeps pace with the cluster model
(:mod:`streams.worker.model_pace`) moves one stream day per round of a chain:
the partition's clock enters a new day → its daily pass → the training
batch that says the day is reviewed → the learner closes the day → the
model arrives → the held events are released and their partitions fetched
again. On fixed timers every link waited for its next tick (1 s, 0.5 s,
0.2 s, plus the fetch's 1 s wait): about 1.7 s of wall clock per stream day
(docs/benchmark.md). Each link now wakes the next one when it has done its
part; the interval stays as the fallback (and as the pace of the loop's
other duties).

Examples
--------
>>> import asyncio
>>> async def demo():
...     wakeup = Wakeup()
...     asyncio.get_running_loop().call_later(0.01, wakeup.set)
...     return await wakeup.wait(60.0)  # returns when woken, long before 60 s
>>> asyncio.run(demo())
True
>>> async def nobody_wakes():
...     return await Wakeup().wait(0.01)
>>> asyncio.run(nobody_wakes())
False
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Wakeup", "Wakeups", "install_loop"]

log = logging.getLogger(__name__)


@dataclass
class Wakeup:
    """Wake a waiting loop early; a wake-up while it runs is kept for its next wait."""

    _event: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self) -> None:
        """Wake the loop (now, or as soon as it waits again)."""
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until woken or ``timeout`` seconds passed; True if woken."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True


@dataclass
class Wakeups:
    """The links of the per-stream-day chain (module docs) a worker can wake."""

    clock: Wakeup = field(default_factory=Wakeup)  # a partition's day moved: start its pass
    training: Wakeup = field(default_factory=Wakeup)  # a pass finished: tell the learner
    release: Wakeup = field(default_factory=Wakeup)  # a newer model: release held events


def install_loop(
    app: Any, interval: float, wakeup: Wakeup, step: Callable[[], Awaitable[None]]
) -> None:
    """Run ``step`` on ``app`` every ``interval`` seconds, or as soon as ``wakeup``
    is set; a step that raises is logged and the loop goes on (as the timers
    it replaces, it must never stop the worker)."""

    async def loop() -> None:
        while not app.should_stop:
            await wakeup.wait(interval)
            if app.should_stop:
                return
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; retrying", getattr(step, "__name__", "a loop step"))

    loop.__name__ = loop.__qualname__ = getattr(step, "__name__", "loop")
    app.task(loop)
