"""Property tests: whatever arrives, validate() answers with an event or InvalidEvent.

The invariant: :func:`schemas.validate` either returns a dict that has every
required field and an integer ``ts``, or raises :class:`InvalidEvent` with a
reason from the bounded set, never any other exception; and the dead letter
built from any such failure is valid against the dead-letters schema, checked
both with our compiled validator and independently with ``jsonschema``.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schema_examples import COMMON, INPUT_EXAMPLES, NOW_MS, REQUIRED, example

from models.eventtime import parse_ts
from schemas import INPUT_TOPICS, REASONS, InvalidEvent, dead_letter, load_schema, validate
from schemas import validate_output as check_output
from schemas.validation import MAX_TS_MS, MIN_TS_MS

SKEW_MS = 86_400_000
FAST = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
INDEPENDENT = {
    topic: Draft202012Validator(load_schema(topic)) for topic in (*INPUT_TOPICS, "dead-letters")
}

topics = st.sampled_from(INPUT_TOPICS)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def check(topic: str, raw: bytes | str) -> dict[str, Any] | InvalidEvent:
    """Run validate() and assert the invariant; return the event or the error."""
    try:
        event = validate(topic, raw, now_ms=NOW_MS, max_future_ms=SKEW_MS)
    except InvalidEvent as err:
        assert err.reason in REASONS
        assert isinstance(err.message, str) and err.message
        assert err.field is None or (isinstance(err.field, str) and err.field)
        record = dead_letter(
            source_topic=topic, partition=1, offset=5, key=b"k", raw=raw, error=err, now_ms=NOW_MS
        )
        check_output("dead-letters", record)
        INDEPENDENT["dead-letters"].validate(record)
        orjson.dumps(record)
        return err
    assert isinstance(event, dict)
    for field in COMMON + REQUIRED[topic]:
        assert field in event
    assert type(event["ts"]) is int
    assert MIN_TS_MS <= event["ts"] <= NOW_MS + SKEW_MS
    orjson.dumps(event)
    return event


@FAST
@given(topic=topics, raw=st.binary(max_size=300))
def test_arbitrary_bytes(topic: str, raw: bytes) -> None:
    check(topic, raw)


@FAST
@given(topic=topics, text=st.text(max_size=200))
def test_arbitrary_text(topic: str, text: str) -> None:
    check(topic, text)


@FAST
@given(topic=topics, data=st.data())
def test_truncations_and_corruptions_of_valid_events(topic: str, data: st.DataObject) -> None:
    raw = orjson.dumps(example(topic))
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    result = check(topic, raw[:cut])
    assert isinstance(result, dict) == (cut == len(raw))
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    byte = data.draw(st.integers(min_value=0, max_value=255))
    check(topic, raw[:position] + bytes([byte]) + raw[position + 1 :])


def _paths(event: dict[str, Any]) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = [(key,) for key in event]
    if "attributes" in event:
        paths += [("attributes", key) for key in event["attributes"]]
        paths.append(("attributes", "new_key"))
    paths.append(("new_key",))
    return paths


@settings(FAST, max_examples=500)
@given(topic=topics, data=st.data(), value=json_values)
def test_type_substitutions_agree_with_jsonschema(
    topic: str, data: st.DataObject, value: Any
) -> None:
    event = example(topic)
    path = data.draw(st.sampled_from(_paths(event)))
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    original = copy.deepcopy(event)
    result = check(topic, orjson.dumps(event))
    schema_valid = INDEPENDENT[topic].is_valid(original)
    if isinstance(result, dict):
        assert schema_valid, original
    elif schema_valid:
        # Valid for the schema; only the ts range or calendar checks may still reject.
        assert result.reason == "bad_ts", result
    else:
        assert result.reason in {"schema", "bad_ts"}, result
        if result.field is not None and result.reason == "schema":
            assert result.field.split(".")[0] in {*original, *path}


@settings(FAST, max_examples=300)
@given(topic=topics, value=json_values)
def test_random_json_values(topic: str, value: Any) -> None:
    check(topic, orjson.dumps(value))


@settings(FAST, max_examples=200)
@given(topic=topics, extra=st.dictionaries(st.text(max_size=10), json_values, max_size=3))
def test_random_objects_with_the_common_fields(topic: str, extra: dict[str, Any]) -> None:
    event = {**extra, **{key: INPUT_EXAMPLES[topic][key] for key in COMMON}}
    check(topic, orjson.dumps(event))


OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 2),
    max_value=datetime(2023, 11, 14),
    timezones=OFFSETS | st.just(UTC),
)


def _rfc3339(moment: datetime, zulu: bool) -> str:
    text = moment.isoformat()
    return text[:-6] + "Z" if zulu and text.endswith("+00:00") else text


timestamps = st.one_of(
    st.integers(min_value=MIN_TS_MS, max_value=NOW_MS + SKEW_MS),
    st.builds(_rfc3339, moments, st.booleans()),
)
ids = st.text(min_size=1, max_size=200)


@settings(FAST, max_examples=200)
@given(
    event=st.fixed_dictionaries(
        {
            "event_id": ids,
            "customer_id": ids,
            "ts": timestamps,
            "order_id": ids,
            "amount": st.floats(min_value=0, max_value=1e9) | st.integers(0, 10**6),
            "items": st.integers(min_value=1, max_value=1000),
            "category": ids,
            "channel": ids,
        },
        optional={"currency": st.from_regex(r"\A[A-Z]{3}\Z")},
    )
)
def test_generated_valid_purchases_pass(event: dict[str, Any]) -> None:
    assert INDEPENDENT["purchases"].is_valid(event)
    result = check("purchases", orjson.dumps(event))
    assert isinstance(result, dict), result
    assert result["ts"] == parse_ts(event["ts"])
    assert MIN_TS_MS <= result["ts"] <= MAX_TS_MS


@settings(FAST, max_examples=200)
@given(
    kind=st.sampled_from(["nps", "csat", "review"]),
    score=st.floats(min_value=-2, max_value=12) | st.integers(-2, 12),
    ts=timestamps,
)
def test_feedback_score_ranges(kind: str, score: float, ts: object) -> None:
    event = {**example("feedback"), "kind": kind, "score": score, "ts": ts}
    low, high = (0, 10) if kind == "nps" else (1, 5)
    result = check("feedback", orjson.dumps(event))
    if low <= score <= high:
        assert isinstance(result, dict), result
    else:
        assert isinstance(result, InvalidEvent)
        assert (result.reason, result.field) == ("schema", "score")
