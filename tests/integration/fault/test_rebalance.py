"""Two workers in one consumer group; one leaves and comes back.

Partitions move between the workers, the customer table is recovered from its
changelog on the new owner, and the features end equal to the reference.
Either worker answers ``GET /customers/{id}`` for every customer (Faust routes
the request to the owner of the customer's partition) with the same document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.integration.conftest import Stack, handled_total, wait_for
from tests.integration.fault.conftest import (
    feature_mismatches,
    history,
    wait_committed,
    wait_features,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_worker_leaves_and_rejoins_features_stay_exact(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    hist = history(customers=60, days=40, seed=7)
    half = len(hist.events) // 2
    w1 = stack.worker("w1")
    w2 = stack.worker("w2")
    wait_for(lambda: w1.get("/ready")[0] == 200 and w2.get("/ready")[0] == 200, timeout=60)

    asyncio.run(stack.produce(hist.events[:half]))
    # Both workers take part: each handles some of the first half.
    wait_for(lambda: handled_total([w1, w2]) >= half * 0.5, timeout=120, interval=0.2)

    w2.stop()  # SIGTERM: leaves the group; w1 takes over w2's partitions
    assert w2.proc is not None and w2.proc.returncode is not None
    asyncio.run(stack.produce(hist.events[half:]))
    wait_features(w1, hist.expected, timeout=150)  # w1 alone, all partitions

    w2.start()  # comes back: partitions move back and are recovered from changelogs
    w2.wait_ready()
    wait_committed(stack, timeout=60)
    wait_for(lambda: feature_mismatches(w2, hist.expected) == [], timeout=90, interval=1.0)
    assert feature_mismatches(w1, hist.expected) == []

    different = []
    for customer_id in hist.expected:
        s1, doc1 = w1.get(f"/customers/{customer_id}")
        s2, doc2 = w2.get(f"/customers/{customer_id}")
        assert (s1, s2) == (200, 200), customer_id
        if doc1 != doc2:
            different.append(customer_id)
    assert different == []
