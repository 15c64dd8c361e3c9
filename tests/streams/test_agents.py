"""The worker's input handling, records fed as its batch consumer would: no Kafka needed."""

from __future__ import annotations

from typing import Any

from schemas import validate_output
from streams.codec import decode_state
from tests.streams.conftest import Feeder, event, purchase

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def stored(app: Any, customer_id: str) -> bytes | None:
    """The customer's committed state (test contexts deliver on partition 0)."""
    return app.pipeline.customers.get(customer_id, 0)  # type: ignore[no-any-return]


async def test_purchases_update_features_and_emit_a_valid_lifecycle_change(app: Any) -> None:
    ctx = Feeder(app)
    await ctx.put("purchases", purchase("o1", T0), key=b"c1")
    await ctx.put("purchases", purchase("o2", T0 + 3 * DAY, amount=70.0), key=b"c1")
    state = decode_state(stored(app, "c1"))
    assert state is not None
    view = app.segmenter.processor.view("c1", state, T0 + 3 * DAY)
    assert view["features"]["orders"] == 2
    assert view["features"]["frequency"] == 1
    assert view["features"]["monetary_value"] == 70.0
    changes = [v for _, v in app.pipeline.outputs["segment-changes"].sent]
    lifecycle = [c for c in changes if c["segment_type"] == "lifecycle"]
    assert lifecycle[0]["current"] == "new" and lifecycle[0]["previous"] is None
    for change in changes:
        validate_output("segment-changes", change)
    assert [c["seq"] for c in changes] == list(range(1, len(changes) + 1))


async def test_a_repeated_event_id_is_counted_once(app: Any) -> None:
    ctx = Feeder(app)
    for _ in range(3):
        await ctx.put("purchases", purchase("o1", T0), key=b"c1")
    view = app.segmenter.processor.view("c1", decode_state(stored(app, "c1")), T0)
    assert view["features"]["orders"] == 1
    metrics = app.segmenter.metrics
    assert metrics.sample("segmenter_events_duplicate_total", topic="purchases") == 2.0


async def test_bad_messages_go_to_dead_letters_and_processing_goes_on(app: Any) -> None:
    ctx = Feeder(app)
    await ctx.put("purchases", b"{not json", key=b"c1")
    await ctx.put("purchases", b"\xff\xfe\x00", key=b"c1")
    await ctx.put("purchases", purchase("o-neg", T0, amount=-5.0), key=b"c1")
    await ctx.put("purchases", purchase("o-key", T0), key=b"someone-else")
    await ctx.put("purchases", purchase("o1", T0), key=b"c1")
    dead = [v for _, v in app.pipeline.outputs["dead-letters"].sent]
    assert [d["error"]["reason"] for d in dead] == [
        "invalid_json", "not_utf8", "schema", "key_mismatch",
    ]  # fmt: skip
    assert dead[2]["error"]["field"] == "amount"
    assert dead[1]["payload_encoding"] == "base64"
    for record in dead:
        validate_output("dead-letters", record)
    view = app.segmenter.processor.view("c1", decode_state(stored(app, "c1")), T0)
    assert view["features"]["orders"] == 1


async def test_erase_deletes_the_customer_and_confirms(app: Any) -> None:
    ctx = Feeder(app)
    await ctx.put("purchases", purchase("o1", T0), key=b"c1")
    assert stored(app, "c1") is not None
    await ctx.put("privacy", event("x1", T0 + DAY, action="erase"), key=b"c1")
    assert stored(app, "c1") is None
    confirmations = [v for _, v in app.pipeline.outputs["privacy-confirmations"].sent]
    assert confirmations[0]["action"] == "erase" and confirmations[0]["status"] == "done"
    validate_output("privacy-confirmations", confirmations[0])
    # A replayed event from before the erasure does not bring the customer back.
    await ctx.put("purchases", purchase("o1", T0), key=b"c1")
    assert stored(app, "c1") is None


async def test_messages_redelivered_after_a_crash_are_not_applied_again(app: Any) -> None:
    # After a kill -9 the consumer resumes from the last committed offset, behind
    # the state. Re-delivered messages are skipped by offset, even one whose event
    # time is far older than the dedup window (it would otherwise be "late").
    ctx = Feeder(app)
    await ctx.put("purchases", purchase("o1", T0), key=b"c1")
    await ctx.put("purchases", purchase("o2", T0 + 30 * DAY), key=b"c1")
    ctx.offsets[("purchases", 0)] = 0  # the same two messages again, at their offsets
    await ctx.put("purchases", purchase("o1", T0), key=b"c1")
    await ctx.put("purchases", purchase("o2", T0 + 30 * DAY), key=b"c1")
    await ctx.put("purchases", purchase("o3", T0 + 31 * DAY), key=b"c1")  # offset 2: new
    view = app.segmenter.processor.view("c1", decode_state(stored(app, "c1")), T0 + 31 * DAY)
    assert view["features"]["orders"] == 3
    metrics = app.segmenter.metrics
    assert metrics.sample("segmenter_events_duplicate_total", topic="purchases") == 2.0
    assert app.pipeline.outputs["dead-letters"].sent == []
