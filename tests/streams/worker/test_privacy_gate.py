"""The privacy path first (streams.worker.privacy_gate) through the batch sink, no Kafka."""

from __future__ import annotations

from typing import Any

import orjson

from models.processing import learner_key
from streams.codec import decode_state
from streams.worker.privacy_gate import Suppression, read_suppression
from tests.streams.conftest import Feeder, event, purchase

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EMAIL = b"c1.private@example.org"


def bad_purchase(event_id: str, ts: int) -> bytes:
    """Invalid (negative amount) and carrying personal data."""
    value = orjson.loads(purchase(event_id, ts, amount=-1.0))
    return orjson.dumps(value | {"email": EMAIL.decode()})


async def put(app: Any, topic: str, *messages: tuple[bytes, bytes | None]) -> None:
    feeder = app.test_feeder = getattr(app, "test_feeder", None) or Feeder(app)
    for value, key in messages:
        await feeder.put(topic, value, key=key)


def dead_letters(app: Any) -> list[dict[str, Any]]:
    return [v for _, v in app.pipeline.outputs["dead-letters"].sent]


def rejected(app: Any, reason: str, topic: str = "purchases") -> float:
    value = app.segmenter.metrics.sample(
        "segmenter_events_rejected_total", topic=topic, reason=reason
    )
    return float(value or 0.0)


def suppression(app: Any, customer: str = "c1") -> Suppression | None:
    return read_suppression(app.pipeline.suppressions.get(customer, 0))


async def test_an_opted_out_customer_is_dropped_before_validation(app: Any) -> None:
    await put(app, "purchases", (purchase("o1", T0), b"c1"))
    await put(app, "privacy", (event("p1", T0 + DAY, action="opt_out"), b"c1"))
    assert suppression(app) == Suppression(opted_out_ms=T0 + DAY)
    await put(
        app,
        "purchases",
        (bad_purchase("o2", T0 + 2 * DAY), b"c1"),
        (b'{"customer_id": "c1", "email": "' + EMAIL, b"c1"),  # not even JSON
        (purchase("o3", T0 + 3 * DAY), b"c1"),
    )
    assert dead_letters(app) == []
    assert rejected(app, "opted_out") == 3 and rejected(app, "invalid_json") == 0
    # The opt-out also asks the learner to drop the customer's sample.
    assert {"erase": learner_key("c1", b"agent-tests")} in app.segmenter.training_buffer


async def test_an_erased_customer_leaves_no_dead_letter_until_they_come_back(app: Any) -> None:
    await put(app, "purchases", (purchase("o1", T0), b"c1"))
    await put(app, "privacy", (event("p1", T0 + DAY, action="erase"), b"c1"))
    await put(
        app,
        "purchases",
        (bad_purchase("o2", T0), b"c1"),  # keyed
        (bad_purchase("o3", T0), None),  # unkeyed: customer_id read from the bytes
        (bad_purchase("o4", T0), b"c2"),  # names c1 under c2's key
        (bad_purchase("o5", T0 + 5 * DAY), b"c1"),  # its ts cannot be trusted: dropped too
    )
    assert dead_letters(app) == []
    assert rejected(app, "erased") == 4
    # A newer valid event brings c1 back: from then on c1 is treated like anyone.
    await put(app, "purchases", (purchase("o6", T0 + 6 * DAY), b"c1"))
    assert app.pipeline.customers.get("c1", 0) is not None
    await put(app, "purchases", (bad_purchase("o7", T0 + 7 * DAY), b"c1"))
    assert [d["error"]["reason"] for d in dead_letters(app)] == ["schema"]
    # ... but a replay from before the erasure still does not count.
    await put(app, "purchases", (purchase("o1", T0), b"c1"))
    state = decode_state(app.pipeline.customers.get("c1", 0))
    assert state is not None
    assert app.segmenter.processor.view("c1", state, T0 + 7 * DAY)["features"]["orders"] == 1


async def test_an_erasure_keeps_an_opt_out_and_an_opt_in_ends_it(app: Any) -> None:
    await put(app, "privacy", (event("p1", T0, action="opt_out"), b"c1"))
    await put(app, "privacy", (event("p2", T0 + DAY, action="erase"), b"c1"))
    assert suppression(app) == Suppression(erased_ms=T0 + DAY, opted_out_ms=T0)
    await put(app, "purchases", (purchase("o1", T0 + 2 * DAY), b"c1"))
    assert app.pipeline.customers.get("c1", 0) is None
    assert rejected(app, "opted_out") == 1
    await put(app, "privacy", (event("p3", T0 + 3 * DAY, action="opt_in"), b"c1"))
    assert suppression(app) == Suppression(erased_ms=T0 + DAY, opted_in_ms=T0 + 3 * DAY)
    await put(app, "purchases", (purchase("o2", T0 + 4 * DAY), b"c1"))
    assert app.pipeline.customers.get("c1", 0) is not None


async def test_records_written_before_the_gate_still_suppress(app: Any) -> None:
    # An erase time alone (the old record format), and an opted-out customer
    # whose opt-out predates the suppression record.
    app.pipeline.suppressions.table.data[b'"c1"'] = str(T0 + DAY).encode()
    opted = {"f": {}, "dedup": {}, "seg": {}, "churn": {}, "seq": 0, "opted_out": True}
    app.pipeline.customers.table.data[b'"c2"'] = orjson.dumps(opted)
    await put(app, "purchases", (bad_purchase("o1", T0), b"c1"))
    c2_bad = orjson.loads(bad_purchase("o2", T0)) | {"customer_id": "c2"}
    await put(app, "purchases", (orjson.dumps(c2_bad), b"c2"), (purchase("o3", T0), b"c1"))
    assert dead_letters(app) == []
    assert rejected(app, "erased") == 2 and rejected(app, "opted_out") == 1


# -- a privacy request delivered again ----------------------------------------------------
def confirmations(app: Any) -> list[tuple[str, str]]:
    sent = app.pipeline.outputs["privacy-confirmations"].sent
    return [(v["request_event_id"], v["status"]) for _, v in sent]


def orders(app: Any) -> int | None:
    state = decode_state(app.pipeline.customers.get("c1", 0))
    if state is None or state.get("opted_out"):
        return None
    return int(app.segmenter.processor.view("c1", state, T0 + 30 * DAY)["features"]["orders"])


async def redeliver(app: Any, topic: str, offset: int, value: bytes) -> None:
    """The record at ``offset`` of ``topic`` again: a crash before its offset was
    committed while later records of other topics were (topics commit apart)."""
    app.test_feeder.offsets[(topic, 0)] = offset
    await put(app, topic, (value, b"c1"))


async def test_an_erase_delivered_again_does_not_erase_the_customers_return(app: Any) -> None:
    erase = event("p1", T0 + DAY, action="erase")
    await put(app, "purchases", (purchase("o1", T0), b"c1"))
    await put(app, "privacy", (erase, b"c1"))
    await put(app, "purchases", (purchase("o2", T0 + 2 * DAY), b"c1"))  # back: a new relationship
    assert orders(app) == 1
    await redeliver(app, "privacy", 0, erase)
    assert orders(app) == 1  # the erasure of what came before day 1 is done already
    assert confirmations(app) == [("p1", "done"), ("p1", "done")]
    assert suppression(app) == Suppression(erased_ms=T0 + DAY)
    # An older erase request is covered by the newer one in the same way.
    await put(app, "privacy", (event("p0", T0 + DAY - 1, action="erase"), b"c1"))
    assert orders(app) == 1 and confirmations(app)[-1] == ("p0", "done")
    # The learner's new sample of the customer stays too.
    erasures = [item for item in app.segmenter.training_buffer if "erase" in item]
    assert len(erasures) == 1


async def test_an_opt_out_delivered_again_after_an_opt_in_does_not_opt_out(app: Any) -> None:
    opt_out = event("p1", T0 + DAY, action="opt_out")
    await put(app, "purchases", (purchase("o1", T0), b"c1"))
    await put(app, "privacy", (opt_out, b"c1"))
    await put(app, "privacy", (event("p2", T0 + 2 * DAY, action="opt_in"), b"c1"))
    await put(app, "purchases", (purchase("o3", T0 + 3 * DAY), b"c1"))
    await redeliver(app, "privacy", 0, opt_out)
    assert orders(app) == 1
    assert suppression(app) == Suppression(opted_in_ms=T0 + 2 * DAY)
    assert confirmations(app)[-1] == ("p1", "superseded")


async def test_an_opt_in_delivered_again_after_a_newer_opt_out_does_not_opt_in(app: Any) -> None:
    opt_in = event("p2", T0 + 2 * DAY, action="opt_in")
    await put(app, "privacy", (event("p1", T0 + DAY, action="opt_out"), b"c1"))
    await put(app, "privacy", (opt_in, b"c1"))
    await put(app, "privacy", (event("p3", T0 + 3 * DAY, action="opt_out"), b"c1"))
    await redeliver(app, "privacy", 1, opt_in)
    assert suppression(app) == Suppression(opted_out_ms=T0 + 3 * DAY)
    await put(app, "purchases", (purchase("o4", T0 + 4 * DAY), b"c1"))
    assert orders(app) is None and rejected(app, "opted_out") == 1
    assert confirmations(app)[-1] == ("p2", "superseded")


async def test_an_opt_out_delivered_again_keeps_its_time(app: Any) -> None:
    opt_out = event("p1", T0 + DAY, action="opt_out")
    await put(app, "privacy", (event("p0", T0 + 2 * DAY, action="opt_out"), b"c1"))
    await put(app, "privacy", (opt_out, b"c1"))  # an older request, after a newer one
    assert suppression(app) == Suppression(opted_out_ms=T0 + 2 * DAY)
    assert confirmations(app) == [("p0", "done"), ("p1", "done")]
    state = decode_state(app.pipeline.customers.get("c1", 0))
    assert state is not None and state["since_ms"] == T0 + 2 * DAY


async def test_an_opt_in_at_the_time_of_an_opt_out_leaves_the_customer_out(app: Any) -> None:
    await put(app, "privacy", (event("p1", T0 + DAY, action="opt_out"), b"c1"))
    await put(app, "privacy", (event("p2", T0 + DAY, action="opt_in"), b"c1"))
    assert suppression(app) == Suppression(opted_out_ms=T0 + DAY)
    assert confirmations(app)[-1] == ("p2", "superseded")
