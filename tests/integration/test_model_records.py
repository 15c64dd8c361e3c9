"""Records on segment-models are data, never code; a bad one never stops a worker.

Anyone who can write to the ``segment-models`` topic can put any bytes there.
A learner state that is a crafted pickle must not run (issue #18: it created a
file through ``pickle.loads``), and a malformed record must be skipped and
counted without blocking readiness (it made the broadcast reader restart from
the beginning forever).
"""

from __future__ import annotations

import asyncio
import base64
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.tools.simulator import Simulation
from streams.topics import MODELS_TOPIC
from streams.worker.churn_learner import CHURN_MODEL_KEY
from tests.integration.conftest import Stack, Worker, metric_total, wait_for

pytestmark = [pytest.mark.timeout(300)]

DAY = 86_400_000


class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appears."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def latest_model(stack: Stack) -> dict[str, Any]:
    records = asyncio.run(stack.consume_raw(stack.topic(MODELS_TOPIC)))
    records = [r for r in records if r[0] != CHURN_MODEL_KEY]  # (the churn learner's)
    assert records, "no model was published"
    return dict(orjson.loads(records[-1][1]))


def put_model(stack: Stack, value: bytes) -> None:
    asyncio.run(stack.produce([(MODELS_TOPIC, value)], key=lambda _: b"clusters"))


def cluster_of(worker: Worker, customer: str) -> str | None:
    status, body = worker.get(f"/customers/{customer}")
    return body["segments"].get("cluster") if status == 200 else None


def test_a_forged_pickle_state_runs_nothing_and_the_worker_keeps_assigning(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stack_factory(SEGMENTER_CLUSTER_WARMUP="40")
    sim = Simulation(customers=80, days=30, seed=5)
    events = list(sim.events())
    first = [e for e in events if e[1]["ts"] < sim.start_ms + 20 * DAY]
    rest = events[len(first) :]
    worker = stack.worker("w1")
    asyncio.run(stack.produce(first))
    wait_for(lambda: worker.get("/segments")[1]["clusters"] >= 2, timeout=180)
    good = latest_model(stack)

    marker = tmp_path / "owned-by-a-model-record"
    forged = dict(good, state=base64.b64encode(pickle.dumps(_CreatesFile(marker))).decode())
    put_model(stack, orjson.dumps(forged))
    # The learner reads the state when it starts: a restart makes it read this one.
    worker.stop()
    worker.start()
    worker.wait_ready()
    asyncio.run(stack.produce(rest))
    # The learner started (it read the record's state) and publishes again.
    wait_for(lambda: latest_model(stack)["snapshot"]["version"] > good["snapshot"]["version"], 120)
    assert not marker.exists(), "the pickle in the model record was executed"
    assert metric_total(worker, "segmenter_model_records_rejected_total", reason="state") == 1
    assert worker.get("/ready")[0] == 200

    # It keeps assigning: the customers of the last days are placed in clusters, and
    # the learner resumed from the record's snapshot (same clusters).
    newest = sorted({e["customer_id"] for _, e in rest})[:20]
    wait_for(lambda: all(cluster_of(worker, c) is not None for c in newest), timeout=120)
    resumed = latest_model(stack)
    assert resumed["state"] != forged["state"]
    assert set(resumed["snapshot"]["centroids"]) & set(good["snapshot"]["centroids"])


def test_malformed_model_records_are_counted_and_never_block_readiness(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(SEGMENTER_CLUSTER_WARMUP="40")
    bad_snapshot = {"snapshot": {"version": 3, "centroids": {"c0": {}}, "profiles": ["junk"]}}
    put_model(stack, b"{not json")
    put_model(stack, orjson.dumps(bad_snapshot))
    worker = stack.worker("w1")  # waits for /ready: the reader got past both records
    assert metric_total(worker, "segmenter_model_records_rejected_total", reason="unreadable") == 1
    assert metric_total(worker, "segmenter_model_records_rejected_total", reason="snapshot") == 1
    assert metric_total(worker, "segmenter_model_version") == 0  # nothing was installed

    # A valid model published afterwards is used.
    sim = Simulation(customers=80, days=25, seed=6)
    asyncio.run(stack.produce(list(sim.events())))
    wait_for(lambda: worker.get("/segments")[1]["clusters"] >= 2, timeout=180)
    assert metric_total(worker, "segmenter_model_version") >= 1
