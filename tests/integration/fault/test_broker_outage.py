"""The broker goes away while the worker runs, and comes back.

This test starts its OWN single-node broker (never the shared one), so it can
stop and start it: data under ``tmp_path``, free ports, a small heap, and the
cached broker jars linked in so nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from streams.ops.broker import LocalBroker
from streams.topics import create_topics
from tests.integration.conftest import Stack, handled_total, wait_for
from tests.integration.fault.conftest import history, wait_committed, wait_features

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_broker_restart_loses_nothing(own_broker: LocalBroker, tmp_path: Path) -> None:
    stack = Stack(
        bootstrap=own_broker.bootstrap,
        root=tmp_path / "stack",
        prefix="outage-",
        app_id="segmenter-outage",
        partitions=4,
    )
    asyncio.run(create_topics(stack.settings))
    hist = history(customers=60, days=40, seed=13)
    half = len(hist.events) // 2
    try:
        worker = stack.worker("w1")
        asyncio.run(stack.produce(hist.events[:half]))
        wait_for(lambda: handled_total([worker]) >= half * 0.3, timeout=120, interval=0.2)

        assert own_broker.stop()  # mid-processing
        time.sleep(5)
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
        own_broker.start(timeout=120)

        asyncio.run(stack.produce(hist.events[half:]))
        wait_features(worker, hist.expected, timeout=180)
        wait_committed(stack, timeout=60)
        assert worker.proc.poll() is None, "the worker did not survive the outage"
    finally:
        stack.stop()
