"""`segmenter customer ID` for ids with spaces, slashes, `%` and non-ASCII
characters, asked of either worker of a two-worker group (so requests for the
other worker's partitions are forwarded by Faust with the id still encoded)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import orjson

from .conftest import SEGMENTER, Stack, Worker, wait_for

ODD_IDS = ["a b", "ünï-cøde", "a/b", "50% off", "顧客-7", "c?x=1#y"]
T0 = int(time.time() * 1000) - 3 * 86_400_000


def customer_document(worker: Worker, customer_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SEGMENTER, "customer", customer_id, "--raw"],
        env=worker.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_odd_customer_ids_are_reachable_from_every_worker(stack: Stack) -> None:
    first = stack.worker("w1")
    second = stack.worker("w2")
    events: list[tuple[str, Any]] = [
        ("purchases", {"event_id": f"p{n}", "customer_id": customer_id, "ts": T0 + n,
                       "order_id": f"o{n}", "amount": 10.0 + n})
        for n, customer_id in enumerate(ODD_IDS)
    ]  # fmt: skip
    asyncio.run(stack.produce(events))

    for worker in (first, second):
        for n, customer_id in enumerate(ODD_IDS):

            def answered(worker: Worker = worker, customer_id: str = customer_id) -> Any:
                result = customer_document(worker, customer_id)
                return result if result.returncode == 0 else None

            result = wait_for(answered, timeout=60)
            document = orjson.loads(result.stdout)
            assert document["customer_id"] == customer_id
            assert document["features"]["orders"] == 1
            assert document["features"]["revenue"] == 10.0 + n

    unknown = customer_document(first, "nobody/here")
    assert unknown.returncode == 1
    assert unknown.stderr.splitlines() == [
        f"error: customer 'nobody/here' is unknown (or opted out or erased) on {first.url}"
    ]
