"""SEGMENTER_MIN_EVENT_TIME: history before the bound is dead-lettered with a
reason that names the setting; lowering the bound lets a backfill through."""

from __future__ import annotations

from typing import Any

from models.eventtime import parse_ts
from schemas import validate_output
from streams.codec import decode_state
from tests.streams.conftest import Feeder, event

T1995 = parse_ts("1995-03-01T10:00:00Z")
DAY = 86_400_000


def minimal_purchase(event_id: str, ts: int, amount: float) -> bytes:
    """A purchase with only the fields the contract requires."""
    return event(event_id, ts, order_id=event_id, amount=amount)


async def replay_1995(app: Any) -> None:
    feeder = Feeder(app)
    await feeder.put("purchases", minimal_purchase("o1", T1995, 20.0), key=b"c1")
    await feeder.put("purchases", minimal_purchase("o2", T1995 + 7 * DAY, 30.0), key=b"c1")


async def test_events_before_the_default_bound_are_dead_lettered_with_the_reason(
    make_app: Any,
) -> None:
    app = make_app()
    await replay_1995(app)
    dead = [value for _, value in app.pipeline.outputs["dead-letters"].sent]
    assert [d["error"]["reason"] for d in dead] == ["bad_ts", "bad_ts"]
    message = dead[0]["error"]["message"]
    assert "before the minimum event time 2000-01-01T00:00:00Z" in message
    assert "SEGMENTER_MIN_EVENT_TIME" in message
    for record in dead:
        validate_output("dead-letters", record)
    assert app.pipeline.customers.get("c1", 0) is None


async def test_a_backfill_works_after_lowering_the_bound(make_app: Any) -> None:
    app = make_app(min_event_time="1990-01-01T00:00:00Z")
    await replay_1995(app)
    assert app.pipeline.outputs["dead-letters"].sent == []
    state = decode_state(app.pipeline.customers.get("c1", 0))
    assert state is not None
    features = app.segmenter.processor.view("c1", state, T1995 + 7 * DAY)["features"]
    assert (features["orders"], features["revenue"], features["frequency"]) == (2, 50.0, 1)
    assert features["first_purchase_ts"] == "1995-03-01T10:00:00.000Z"
    changes = [value for _, value in app.pipeline.outputs["segment-changes"].sent]
    assert changes and changes[0]["ts"].startswith("1995-03-01")
    for change in changes:
        validate_output("segment-changes", change)
