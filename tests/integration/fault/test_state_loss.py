"""Local state lost: the worker rebuilds the customer table from its changelog."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable

import pytest

from tests.integration.conftest import Stack
from tests.integration.fault.conftest import history, read_topic, wait_committed, wait_features

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_wiped_rocksdb_is_rebuilt_from_the_changelog(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    hist = history(customers=60, days=40, seed=9)
    worker = stack.worker("w1")
    asyncio.run(stack.produce(hist.events))
    wait_features(worker, hist.expected, timeout=150)
    wait_committed(stack, timeout=60)
    worker.stop()
    # Every committed event's time is on the stream-clock topic (published with
    # the commit): the rebuilt worker reads no event and must still know the clock.
    published = asyncio.run(read_topic(stack, "stream-clock"))
    assert max(record["clock_ms"] for record in published) == hist.clock_ms

    state_dir = stack.root / "w1" / f"worker-{worker.port}"
    assert any(state_dir.rglob("*.sst")) or any(state_dir.rglob("*.log")), "no RocksDB found"
    shutil.rmtree(state_dir)

    worker.start()
    worker.wait_ready()
    wait_features(worker, hist.expected, timeout=120)
