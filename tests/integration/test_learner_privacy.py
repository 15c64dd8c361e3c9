"""The learner forgets opted-out and erased customers, under salted keys that
every worker derives from one persisted salt (real broker).

Worker 1 learns from three customers (among enough others for the learner to
form its first model) and generates the salt; it stops and worker 2 (another
process, port and data directory) takes over and handles an opt-out and an
erasure: the next published model no longer holds those two customers'
samples, and still holds the others'. Nothing on ``segment-training`` names a
customer, and no key is the unsalted hash of an id.

The learner publishes in stream time (#17): its first model once it holds
``SEGMENTER_CLUSTER_WARMUP`` customers and two weeks of history have closed
(``streams.worker.learner.WARMUP_DAYS``), so the customers buy over three weeks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from models.processing import learner_key, output_event_id
from streams.settings import Settings
from streams.topics import MODELS_TOPIC, SALT_TOPIC, TRAINING_TOPIC
from streams.worker.app import build_runtime
from streams.worker.churn_learner import CHURN_MODEL_KEY
from streams.worker.learner import LearnerHost
from streams.worker.learner_salt import derive_salt, resolve_learner_salt, salt_from_topic
from tests.integration.conftest import Stack, wait_for

pytestmark = pytest.mark.timeout(300)

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CUSTOMERS = ("ann", "eve", "bob")
# The others the first model needs (at least SEGMENTER_CLUSTER_WARMUP=40 customers).
OTHERS = tuple(f"cust{i:02d}" for i in range(40))
PURCHASE_DAYS = (0, 10, 20)  # 3 purchases each; the learner's warm-up is 14 days


def purchase(customer: str, n: int) -> dict[str, Any]:
    spend = 10.0 + n + 3 * (sum(map(ord, customer)) % 17)  # customers differ
    return {"event_id": f"{customer}-o{n}", "customer_id": customer, "ts": T0 + n * DAY,
            "order_id": f"{customer}-{n}", "amount": spend, "items": 1,
            "category": "books", "channel": "web"}  # fmt: skip


def latest_model(stack: Stack) -> tuple[int, dict[str, Any]] | None:
    records = asyncio.run(stack.consume_raw(stack.topic(MODELS_TOPIC), timeout=3))
    records = [r for r in records if r[0] != CHURN_MODEL_KEY]  # (the churn learner's)
    if not records or records[-1][1] is None:
        return None
    return len(records), orjson.loads(records[-1][1])


def held_keys(stack: Stack, message: dict[str, Any], keys: dict[str, str]) -> dict[str, bool]:
    """Which customers' samples the published learner holds (restored as a worker does)."""
    rt = build_runtime(stack.settings)
    rt.model_message = message
    learner = LearnerHost(rt).ensure_learner()
    return {c: learner.forget(key) for c, key in keys.items()}  # forget: True if it was there


def test_opt_out_and_erase_remove_learner_samples_on_another_worker(stack_factory: Any) -> None:
    stack: Stack = stack_factory(partitions=2, SEGMENTER_CLUSTER_WARMUP="40")
    first = stack.worker("w1")
    everyone = CUSTOMERS + OTHERS
    asyncio.run(
        stack.produce([("purchases", purchase(c, n)) for n in PURCHASE_DAYS for c in everyone])
    )
    salt = asyncio.run(salt_from_topic(stack.settings))
    keys = {c: learner_key(c, salt) for c in everyone}

    def holds_all() -> tuple[int, dict[str, Any]] | None:
        latest = latest_model(stack)
        if latest and all(held_keys(stack, latest[1], keys).values()):
            return latest
        return None

    published, message = wait_for(holds_all, timeout=90)

    # The training topic carries salted keys only: no id, no unsalted hash.
    training = asyncio.run(stack.consume_raw(stack.topic(TRAINING_TOPIC), timeout=3))
    items = [item for _, value in training for item in orjson.loads(value or b"{}")["items"]]
    assert {item["k"] for item in items} == set(keys.values())
    raw = b"".join(value or b"" for _, value in training)
    for customer in everyone:
        assert f'"{customer}"'.encode() not in raw
        assert output_event_id(customer)[:16].encode() not in raw  # the old, unsalted key
    assert salt.hex() not in (orjson.dumps(message)).decode()  # the salt is not published

    # Another process takes over: it must find the same salt, so forget hits.
    first.stop()
    second = stack.worker("w2")
    asyncio.run(
        stack.produce(
            [
                ("privacy", {"event_id": "p1", "customer_id": "ann", "ts": T0 + 25 * DAY,
                             "action": "opt_out"}),
                ("privacy", {"event_id": "p2", "customer_id": "eve", "ts": T0 + 25 * DAY,
                             "action": "erase"}),
            ]
        )
    )  # fmt: skip
    confirmations = asyncio.run(
        stack.consume("privacy-confirmations", until=lambda rs: len(rs) >= 2)
    )
    assert all(r["value"]["details"]["model_erase_requests"] == 1 for r in confirmations)

    def forgotten() -> dict[str, Any] | None:
        latest = latest_model(stack)
        if latest and latest[0] > published:
            held = held_keys(stack, latest[1], keys)
            if not held["ann"] and not held["eve"]:
                return {"held": held, "message": latest[1]}
        return None

    outcome = wait_for(forgotten, timeout=90)
    others = {c: held for c, held in outcome["held"].items() if c not in ("ann", "eve")}
    assert all(others.values()), f"the other customers' samples stay: {others}"
    assert second.proc is not None and second.proc.poll() is None


async def test_every_worker_adopts_the_first_salt_written(bootstrap: str) -> None:
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:8]}-")
    # Four workers start at once on an empty deployment: one salt for all.
    salts = await asyncio.gather(*(salt_from_topic(settings) for _ in range(4)))
    assert len(set(salts)) == 1 and len(salts[0]) == 32
    assert await resolve_learner_salt(settings) == salts[0]  # and after a restart

    configured = Settings(
        kafka_bootstrap=bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:8]}-", learner_salt="x"
    )
    assert await resolve_learner_salt(configured) == derive_salt("x") != salts[0]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    assert settings.topic(SALT_TOPIC) in topics
    assert configured.topic(SALT_TOPIC) not in topics  # a configured salt is kept nowhere
