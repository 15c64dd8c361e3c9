"""Example-based tests of ``schemas.validate`` and ``schemas.validate_output``."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from schema_examples import COMMON, INPUT_EXAMPLES, NOW_MS, OUTPUT_EXAMPLES, REQUIRED, example

from models.eventtime import parse_ts
from schemas import (
    INPUT_TOPICS,
    OUTPUT_TOPICS,
    REASONS,
    InvalidEvent,
    load_schema,
    validate,
    validate_output,
)


def raw(event: Any) -> bytes:
    return orjson.dumps(event)


def rejected(topic: str, payload: Any, **kwargs: Any) -> InvalidEvent:
    data = payload if isinstance(payload, bytes | str) else raw(payload)
    with pytest.raises(InvalidEvent) as info:
        validate(topic, data, **kwargs)
    assert info.value.reason in REASONS
    return info.value


# ---------------------------------------------------------------- valid events


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_valid_example_passes_and_ts_is_normalised(topic: str) -> None:
    event = example(topic)
    result = validate(topic, raw(event), now_ms=NOW_MS)
    assert result["ts"] == parse_ts(event["ts"])
    assert type(result["ts"]) is int
    expected = {**event, "ts": result["ts"]}
    if topic == "profiles":
        expected["attributes"]["signup_ts"] = parse_ts(event["attributes"]["signup_ts"])
    assert result == expected


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_str_input_is_accepted(topic: str) -> None:
    assert validate(topic, raw(example(topic)).decode())["event_id"] == example(topic)["event_id"]


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_minimal_event_with_only_required_fields_passes(topic: str) -> None:
    event = example(topic)
    minimal = {key: event[key] for key in COMMON + REQUIRED[topic]}
    if topic == "profiles":
        minimal["attributes"] = {}
    assert validate(topic, raw(minimal))["customer_id"] == "c-1"


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_unknown_fields_are_allowed_on_inputs(topic: str) -> None:
    event = {**example(topic), "x_new_field": {"nested": [1, 2]}}
    assert validate(topic, raw(event))["x_new_field"] == {"nested": [1, 2]}


def test_browsing_accepts_unknown_action_values() -> None:
    event = {**example("browsing"), "action": "video_play"}
    assert validate("browsing", raw(event))["action"] == "video_play"


@pytest.mark.parametrize(
    ("kind", "score"),
    [("nps", 0), ("nps", 10), ("csat", 1), ("csat", 5), ("review", 1), ("review", 4.5)],
)
def test_feedback_scores_at_the_bounds_pass(kind: str, score: float) -> None:
    assert validate("feedback", raw({**example("feedback"), "kind": kind, "score": score}))


def test_profiles_accepts_null_attributes_and_integer_company_size() -> None:
    event = example("profiles")
    event["attributes"] = {"age": None, "company_size": 250, "signup_ts": None, "score": 1.5}
    assert validate("profiles", raw(event))["attributes"]["company_size"] == 250


# ------------------------------------------------------ required / type / range


@pytest.mark.parametrize(
    ("topic", "field"),
    [(topic, field) for topic in INPUT_TOPICS for field in COMMON + REQUIRED[topic]],
)
def test_missing_required_field(topic: str, field: str) -> None:
    event = example(topic)
    del event[field]
    err = rejected(topic, event)
    assert (err.reason, err.field) == ("schema", field)
    assert field in err.message and "missing" in err.message


@pytest.mark.parametrize(
    ("topic", "field", "value"),
    [
        ("purchases", "event_id", 17),
        ("purchases", "event_id", ""),
        ("purchases", "event_id", "x" * 201),
        ("purchases", "customer_id", None),
        ("purchases", "customer_id", ""),
        ("purchases", "order_id", ["o"]),
        ("purchases", "amount", "12.50"),
        ("purchases", "amount", -0.01),
        ("purchases", "amount", True),
        ("purchases", "currency", "eur"),
        ("purchases", "currency", "EURO"),
        ("purchases", "items", 0),
        ("purchases", "items", 1.5),
        ("purchases", "items", "3"),
        ("purchases", "category", 5),
        ("purchases", "channel", ""),
        ("browsing", "session_id", 1),
        ("browsing", "action", ""),
        ("browsing", "page", 3),
        ("browsing", "platform", {"os": "ios"}),
        ("support", "ticket_id", 9),
        ("support", "status", "closed"),
        ("support", "priority", "critical"),
        ("support", "channel", None),
        ("feedback", "kind", "stars"),
        ("feedback", "score", "9"),
        ("feedback", "score", 11),
        ("feedback", "score", -1),
        ("feedback", "comment", "x" * 5001),
        ("profiles", "attributes", "DE"),
        ("profiles", "attributes", None),
        ("privacy", "action", "delete"),
        ("privacy", "reason", 3),
    ],
)
def test_wrong_type_or_range(topic: str, field: str, value: Any) -> None:
    event = {**example(topic), field: value}
    err = rejected(topic, event)
    assert (err.reason, err.field) == ("schema", field)
    assert err.message.startswith(field), err.message


@pytest.mark.parametrize(
    ("kind", "score"),
    [("nps", 10.5), ("csat", 0), ("csat", 6), ("review", 0.5), ("review", 5.5)],
)
def test_feedback_score_range_depends_on_kind(kind: str, score: float) -> None:
    err = rejected("feedback", {**example("feedback"), "kind": kind, "score": score})
    assert (err.reason, err.field) == ("schema", "score")
    assert repr(kind) in err.message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("age", 131),
        ("age", -1),
        ("age", 30.5),
        ("age", "41"),
        ("country", "de"),
        ("country", "DEU"),
        ("company_size", 0),
        ("company_size", ""),
        ("company_size", [10]),
        ("city", 12),
        ("signup_ts", 1.5),
        ("signup_ts", "2019-05-01"),
        ("custom_list", [1, 2]),
        ("custom_object", {"a": 1}),
    ],
)
def test_profile_attribute_errors_carry_the_dotted_path(key: str, value: Any) -> None:
    event = example("profiles")
    event["attributes"][key] = value
    err = rejected("profiles", event)
    assert err.field == f"attributes.{key}"
    assert err.reason == ("bad_ts" if key == "signup_ts" else "schema")
    assert f"attributes.{key}" in err.message


def test_profile_signup_ts_is_normalised_and_checked() -> None:
    event = example("profiles")
    event["attributes"]["signup_ts"] = "1995-03-01T00:00:00+01:00"
    result = validate("profiles", raw(event))
    assert result["attributes"]["signup_ts"] == parse_ts("1995-03-01T00:00:00+01:00")
    event["attributes"]["signup_ts"] = "2019-02-30T00:00:00Z"
    err = rejected("profiles", event)
    assert (err.reason, err.field) == ("bad_ts", "attributes.signup_ts")


def test_message_is_precise() -> None:
    err = rejected("purchases", {**example("purchases"), "amount": -3})
    assert err.message == "amount must be bigger than or equal to 0, got integer -3"
    err = rejected("purchases", {**example("purchases"), "items": "3"})
    assert err.message == "items must be integer, got string '3'"


# --------------------------------------------------------------------- ts


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T22:13:20z", 1_700_000_000_000),
        ("2023-11-14t22:13:20Z", 1_700_000_000_000),
        ("2023-11-15T00:13:20+02:00", 1_700_000_000_000),
        ("2023-11-14T16:43:20-05:30", 1_700_000_000_000),
        ("2023-11-14T22:13:20.5Z", 1_700_000_000_500),
        ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123),
        (1_700_000_000_000, 1_700_000_000_000),
        (946_684_800_000, 946_684_800_000),
    ],
)
def test_accepted_ts_forms(ts: object, expected: int) -> None:
    assert validate("privacy", raw({**example("privacy"), "ts": ts}))["ts"] == expected


@pytest.mark.parametrize(
    ("ts", "words"),
    [
        ("2023-11-14T22:13:20", "RFC 3339"),
        ("2023-11-14 22:13:20Z", "RFC 3339"),
        ("2023-11-14", "RFC 3339"),
        ("yesterday", "RFC 3339"),
        ("2023-02-30T00:00:00Z", "not a valid"),
        ("2023-11-14T25:00:00Z", "not a valid"),
        (1_700_000_000_000.0, "integer epoch milliseconds"),
        (1.7e12, "integer epoch milliseconds"),
        (1_700_000_000.5, "integer epoch milliseconds"),
        (True, "RFC 3339"),
        (None, "RFC 3339"),
        ([1], "RFC 3339"),
        ("1999-12-31T23:59:59.999Z", "before the minimum event time 2000-01-01T00:00:00Z"),
        (946_684_799_999, "before the minimum event time 2000-01-01T00:00:00Z"),
        (1_700_000_000, "epoch seconds"),
        (-5, "before the minimum event time 2000-01-01T00:00:00Z"),
        (10**17, "after 9999-12-31"),
        ("HUGE", "integer epoch milliseconds"),
    ],
)
def test_rejected_ts_forms(ts: object, words: str) -> None:
    data = raw({**example("privacy"), "ts": ts})
    if ts == "HUGE":  # beyond 64 bits: orjson parses it as a float
        data = data.replace(b'"HUGE"', b"1" + b"0" * 30)
    err = rejected("privacy", data)
    assert (err.reason, err.field) == ("bad_ts", "ts"), err
    assert words in err.message, err.message


def test_future_ts_is_rejected_only_beyond_the_skew() -> None:
    event = {**example("privacy"), "ts": NOW_MS + 86_400_000}
    assert validate("privacy", raw(event), now_ms=NOW_MS)["ts"] == NOW_MS + 86_400_000
    event["ts"] += 1
    err = rejected("privacy", event, now_ms=NOW_MS)
    assert (err.reason, err.field) == ("bad_ts", "ts")
    assert "in the future" in err.message
    assert validate("privacy", raw(event))["ts"] == event["ts"]  # no wall clock, no check
    assert validate("privacy", raw(event), now_ms=NOW_MS, max_future_ms=10**9)


# ------------------------------------------------------------ raw payloads


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xfe{}", b'{"event_id": "\xc3\x28"}', b"\xed\xa0\x80", '{"a": "\ud800"}'],
)
def test_not_utf8(payload: bytes | str) -> None:
    err = rejected("purchases", payload)
    assert (err.reason, err.field) == ("not_utf8", None)
    assert "UTF-8" in err.message


@pytest.mark.parametrize(
    "payload",
    [b"", b"   ", b"{", b'{"event_id": "p-1", ', b"{'a': 1}", b'{"a": NaN}', b"{} {}", b"nul"],
)
def test_invalid_json(payload: bytes) -> None:
    err = rejected("purchases", payload)
    assert (err.reason, err.field) == ("invalid_json", None)


def test_every_truncation_of_a_valid_event_is_rejected_cleanly() -> None:
    data = raw(example("profiles"))
    for cut in range(len(data)):
        err = rejected("profiles", data[:cut])
        assert err.reason in {"invalid_json", "not_an_object"}, (cut, err)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"[]", "array"),
        (b"[1, 2]", "array"),
        (b"1", "integer"),
        (b'"x"', "string"),
        (b"null", "null"),
        (b"true", "boolean"),
        (b"2.5", "number"),
    ],
)
def test_top_level_must_be_an_object(payload: bytes, kind: str) -> None:
    err = rejected("browsing", payload)
    assert (err.reason, err.field) == ("not_an_object", None)
    assert kind in err.message


def test_too_large() -> None:
    event = {**example("feedback"), "comment": "x" * 70_000}
    err = rejected("feedback", event)
    assert (err.reason, err.field) == ("too_large", None)
    assert "65536" in err.message
    small = raw(example("feedback"))
    assert validate("feedback", small, max_bytes=len(small))
    assert rejected("feedback", small, max_bytes=len(small) - 1).reason == "too_large"


def test_too_large_counts_utf8_bytes_of_str_input() -> None:
    event = {**example("feedback"), "comment": "é" * 1000}
    text = raw(event).decode()
    assert len(text) < 1500 < len(text.encode())
    assert rejected("feedback", text, max_bytes=1500).reason == "too_large"
    assert validate("feedback", text, max_bytes=len(text.encode()))


@pytest.mark.parametrize("payload", [None, 12, ["x"]])
def test_non_bytes_payload(payload: Any) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate("purchases", payload)
    assert info.value.reason == "invalid_json"


def test_bytearray_and_memoryview_are_accepted() -> None:
    data = raw(example("support"))
    assert validate("support", bytearray(data))["ticket_id"] == "T-9"
    assert validate("support", memoryview(data))["ticket_id"] == "T-9"


def test_unknown_topic() -> None:
    err = rejected("orders", raw(example("purchases")))
    assert (err.reason, err.field) == ("unknown_topic", None)
    assert "orders" in err.message
    with pytest.raises(InvalidEvent) as info:
        validate_output("purchases", example("purchases"))
    assert info.value.reason == "unknown_topic"


# ------------------------------------------------------------ outputs


@pytest.mark.parametrize("topic", OUTPUT_TOPICS)
def test_output_examples_validate(topic: str) -> None:
    validate_output(topic, example(topic))


@pytest.mark.parametrize("topic", OUTPUT_TOPICS)
def test_output_extra_field_is_rejected(topic: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_output(topic, {**example(topic), "debug": 1})
    assert (info.value.reason, info.value.field) == ("schema", "debug")


@pytest.mark.parametrize(
    ("topic", "field"), [(t, f) for t in OUTPUT_TOPICS for f in OUTPUT_EXAMPLES[t]]
)
def test_output_every_field_is_required(topic: str, field: str) -> None:
    event = example(topic)
    del event[field]
    with pytest.raises(InvalidEvent) as info:
        validate_output(topic, event)
    assert (info.value.reason, info.value.field) == ("schema", field)


@pytest.mark.parametrize(
    ("topic", "field", "value", "reason"),
    [
        ("segment-changes", "seq", 0, "schema"),
        ("segment-changes", "ts", 1_700_000_000_000, "bad_ts"),
        ("segment-changes", "ts", "2023-02-30T00:00:00Z", "bad_ts"),
        ("segment-changes", "reasons", "x", "schema"),
        ("segment-changes", "reasons", [1], "schema"),
        ("churn-risk", "score", 1.01, "schema"),
        ("churn-risk", "score", -0.1, "schema"),
        ("churn-risk", "level", "extreme", "schema"),
        ("churn-risk", "previous_level", "none", "schema"),
        ("dead-letters", "payload_encoding", "latin-1", "schema"),
        ("dead-letters", "event_id", "purchases:0:12", "schema"),
        ("privacy-confirmations", "details", {"rows": -1}, "schema"),
        ("privacy-confirmations", "action", "delete", "schema"),
    ],
)
def test_output_wrong_values(topic: str, field: str, value: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_output(topic, {**example(topic), field: value})
    assert info.value.reason == reason
    assert info.value.field is not None and info.value.field.startswith(field)


def test_output_nulls_where_allowed() -> None:
    validate_output("segment-changes", {**example("segment-changes"), "previous": None})
    validate_output("segment-changes", {**example("segment-changes"), "current": None})
    validate_output("churn-risk", {**example("churn-risk"), "previous_level": "low"})
    validate_output("dead-letters", {**example("dead-letters"), "key": None})


def test_output_must_be_a_dict() -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_output("churn-risk", [1])  # type: ignore[arg-type]
    assert info.value.reason == "not_an_object"


# ------------------------------------------------------------ misc API


def test_load_schema_and_topics() -> None:
    assert set(INPUT_TOPICS) == set(INPUT_EXAMPLES)
    assert set(OUTPUT_TOPICS) == set(OUTPUT_EXAMPLES)
    assert load_schema("dead-letters")["title"] == "Dead letter"
    schema = load_schema("purchases")
    schema["title"] = "changed"
    assert load_schema("purchases")["title"] != "changed"
    with pytest.raises(ValueError, match="no schema named"):
        load_schema("../pyproject")


def test_invalid_event_pickles_and_reprs() -> None:
    err = InvalidEvent("schema", "amount", "amount must be >= 0")
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.reason, clone.field, clone.message) == ("schema", "amount", "amount must be >= 0")
    assert "reason='schema'" in repr(err)


def test_import_is_cheap_and_compiles_lazily() -> None:
    root = Path(__file__).resolve().parents[2]
    code = (
        "import schemas.validation as v; assert not v._input_validators; "
        "v.validate('privacy', b'{}') if False else None; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
