"""One id per change on the real topics: without faults, and through the worst day.

A consumer that follows the contract drops ids it has seen. Read back from the
output topics, every change (customer, segment type or churn, ``seq``,
previous, current) must have been sent under one id only — else the consumer
acts on it twice — and every id must stand for one change — else the consumer
loses one. (``kill -9`` alone: ``test_crash_recovery.py``.)
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.ops.broker import LocalBroker
from streams.topics import create_topics
from tests.integration.conftest import SEGMENTER, Stack, Worker, wait_for
from tests.integration.fault.conftest import (
    history,
    id_report,
    last_changes_mismatch,
    read_topic,
    segment_chain_breaks,
    served_segments,
    wait_committed,
    wait_features,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


CRASHING = [sys.executable, "-m", "tests.integration.fault.crashing_worker"]


def crashing_worker(stack: Stack, name: str, at_write: int) -> Worker:
    """A worker that dies before its ``at_write``-th state write, after that
    commit's outputs were sent (then runs as a plain worker when started again)."""
    worker = stack.worker(name, start=False)
    worker.command = CRASHING
    worker.env["SEGMENTER_TEST_CRASH_AT_WRITE"] = str(at_write)
    worker.start()
    return worker


def crashed(worker: Worker, timeout: float = 180.0) -> None:
    assert worker.proc is not None
    wait_for(lambda: worker.proc is not None and worker.proc.poll() is not None, timeout=timeout)
    assert worker.proc.returncode == 137, worker.log_tail()
    worker.command = [SEGMENTER, "worker"]  # started again, it is a plain worker


def outputs(stack: Stack) -> dict[str, object]:
    time.sleep(2)  # let the last output batch leave the producer
    changes = asyncio.run(read_topic(stack, "segment-changes"))
    churn = asyncio.run(read_topic(stack, "churn-risk"))
    assert changes and churn
    return {"changes": changes, "churn": churn, **id_report(changes, churn)}


def test_without_faults_every_change_has_one_id_and_is_sent_once(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    hist = history(customers=80, days=60, seed=21)
    asyncio.run(stack.produce(hist.events))
    worker = stack.worker("w1")
    wait_features(worker, hist.expected, timeout=180)
    wait_committed(stack, timeout=60)
    report = outputs(stack)
    print(f"\n{report['records']} records, {report['ids']} ids")
    assert report["ids_per_change"] == {}
    assert report["changes_per_id"] == {}
    assert report["resent"] == 0  # nothing to re-send without a fault


def test_changes_sent_then_lost_keep_their_ids_when_decided_again(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    hist = history(customers=80, days=60, seed=22)
    asyncio.run(stack.produce(hist.events))
    worker = crashing_worker(stack, "w1", at_write=3)
    crashed(worker)
    worker.start()  # a plain worker on the same data dir
    worker.wait_ready()
    wait_features(worker, hist.expected, timeout=180)
    wait_committed(stack, timeout=60)
    report = outputs(stack)
    changes = report["changes"]
    assert isinstance(changes, list)
    served = served_segments(worker, sorted(hist.expected))
    print(
        f"\n{report['records']} records, {report['ids']} ids, {report['resent']} re-sent, "
        f"{report['renumbered']} renumbered, {len(segment_chain_breaks(changes))} chain breaks"
    )
    assert report["resent"] > 0  # the crash did lose sent changes
    assert report["ids_per_change"] == {}
    assert report["changes_per_id"] == {}
    assert last_changes_mismatch(changes, served) == []


def test_two_workers_crash_rebalance_wiped_state_and_broker_restart(
    own_broker: LocalBroker, tmp_path: Path
) -> None:
    """The issue's sequence: two workers share a history; one dies (between a
    commit's outputs and its state) and is restarted; the other is killed -9
    during the rebalance that follows and comes back with its RocksDB deleted
    (rebuilt from the changelogs); then the broker stops and starts. Features
    end exact, and the outputs keep one id per change and one change per id."""
    stack = Stack(
        bootstrap=own_broker.bootstrap,
        root=tmp_path / "stack",
        prefix="ids-",
        app_id="segmenter-ids",
        partitions=4,
    )
    asyncio.run(create_topics(stack.settings))
    hist = history(customers=120, days=50, seed=23)
    try:
        w1 = crashing_worker(stack, "w1", at_write=3)
        w1.wait_ready()
        w2 = stack.worker("w2")
        asyncio.run(stack.produce(hist.events))
        crashed(w1)

        w1.start()  # same data dir; joining starts a rebalance
        time.sleep(2)
        w2.kill()  # during that rebalance
        shutil.rmtree(stack.root / "w2" / f"worker-{w2.port}")
        w2.start()
        w1.wait_ready(timeout=120)
        w2.wait_ready(timeout=120)

        assert own_broker.stop()
        time.sleep(5)
        own_broker.start(timeout=120)

        wait_features(w1, hist.expected, timeout=240)
        wait_committed(stack, timeout=90)
        for worker in (w1, w2):
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()

        report = outputs(stack)
        changes = report["changes"]
        assert isinstance(changes, list)
        served = served_segments(w1, sorted(hist.expected))
        print(
            f"\n{report['records']} records, {report['ids']} ids, {report['resent']} re-sent, "
            f"{report['renumbered']} renumbered, {len(segment_chain_breaks(changes))} chain breaks"
        )
        assert report["resent"] > 0
        assert report["ids_per_change"] == {}
        assert report["changes_per_id"] == {}
        assert last_changes_mismatch(changes, served) == []
    finally:
        stack.stop()
