"""kill -9 in the middle of a replay: nothing lost, nothing counted twice.

The worker is killed with SIGKILL while it is working through a history, then
started again on the same data dir. Offsets it had not committed are consumed
again; each customer's record remembers the offset of the last message applied
per input topic (written in the same record as the features), so the second
delivery is a no-op however old the event, and every customer's features end
equal to the pandas reference. A batch's outputs are acknowledged before its
state is written, so none is lost; any re-emitted after the crash carries the
same deterministic ``event_id`` for the same logical change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.integration.conftest import Stack, handled_total, wait_for
from tests.integration.fault.conftest import (
    duplicate_stats,
    history,
    id_report,
    output_conflicts,
    read_topic,
    segment_chain_breaks,
    served_segments,
    wait_committed,
    wait_features,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SEGMENT_FIELDS = ("customer_id", "segment_type", "previous", "current")
CHURN_FIELDS = ("customer_id", "level", "previous_level")


def test_sigkill_mid_replay_loses_nothing_and_counts_nothing_twice(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    # Big enough that the batch consumer path is still busy when the kill comes.
    hist = history(customers=200, days=40, seed=5)
    total = len(hist.events)
    asyncio.run(stack.produce(hist.events))

    worker = stack.worker("w1")
    # Kill while it is busy: after some, but well before all, events are handled.
    wait_for(lambda: handled_total([worker]) >= total * 0.3, timeout=120, interval=0.05)
    handled_at_kill = handled_total([worker])
    worker.kill()
    assert worker.proc is not None and worker.proc.returncode == -9
    assert handled_at_kill < total, "the worker finished before it could be killed"

    worker.start()  # same port, same data dir (RocksDB survives the kill)
    worker.wait_ready()
    wait_features(worker, hist.expected, timeout=150)
    wait_committed(stack, timeout=60)

    # Outputs: at-least-once with deterministic ids.
    time.sleep(2)  # let the last output batch leave the producer
    changes = asyncio.run(read_topic(stack, "segment-changes"))
    churn = asyncio.run(read_topic(stack, "churn-risk"))
    assert changes and churn
    assert output_conflicts(changes, SEGMENT_FIELDS) == []
    assert output_conflicts(churn, CHURN_FIELDS) == []
    report = id_report(changes, churn)
    print(
        f"\nkilled after {handled_at_kill:.0f}/{total} handled; "
        f"segment-changes {duplicate_stats(changes)}, churn-risk {duplicate_stats(churn)}; "
        f"{report['resent']} re-sent, {report['renumbered']} renumbered"
    )
    # One id per change (a change re-sent after the kill kept its id), one change per id.
    assert report["ids_per_change"] == {}
    assert report["changes_per_id"] == {}
    # Consistent segments: a consumer that de-duplicates by event_id sees, per
    # customer and segment type, an unbroken chain ending where the worker is
    # (no output lost: outputs are acknowledged before the state is written).
    assert segment_chain_breaks(changes, served_segments(worker, sorted(hist.expected))) == []
