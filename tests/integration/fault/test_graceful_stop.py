"""SIGTERM while events are held for their turn in event time: a prompt, clean stop.

In a backlog, a topic with few records (purchases) is read ahead of a busy
one (browsing), and its events wait in the event-time order
(``models/ordering.py``) for browsing to catch up. Faust, when a worker
stops (or a rebalance starts), waits until every message it delivered is
acked; held ones never would be, so the worker drops them first — they are
not acked, and the next start reads them again from the committed offset.
The worker must stop within seconds, and after a restart every customer's
features must equal the pandas reference (nothing lost, nothing twice).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.integration.conftest import Stack, metric_total, wait_for
from tests.integration.fault.conftest import history, wait_committed, wait_features

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_sigterm_with_held_events_stops_promptly_and_loses_nothing(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    hist = history(customers=150, days=40, seed=9)
    asyncio.run(stack.produce(hist.events))

    worker = stack.worker("w1")
    wait_for(lambda: metric_total(worker, "segmenter_events_held") > 0, timeout=120, interval=0.1)
    started = time.monotonic()
    worker.stop(timeout=60)
    assert worker.proc is not None
    stopped_in = time.monotonic() - started
    assert worker.proc.returncode == 0, worker.log_tail()
    assert stopped_in < 20, f"the worker took {stopped_in:.0f} s to stop"

    worker.start()  # same data dir: the held events are read again
    worker.wait_ready()
    wait_features(worker, hist.expected, timeout=150)
    wait_committed(stack, timeout=60)
