"""Tests of ``schemas.dead_letter``: shape, encodings, truncation, determinism."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from schema_examples import NOW_MS

from schemas import InvalidEvent, dead_letter, load_schema, validate, validate_output
from schemas.deadletter import MAX_PAYLOAD_BYTES

DLQ = Draft202012Validator(
    load_schema("dead-letters"), format_checker=Draft202012Validator.FORMAT_CHECKER
)


def build(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "source_topic": "dev.purchases",
        "partition": 2,
        "offset": 99,
        "key": b"c-1",
        "raw": b'{"amount": -1}',
        "error": InvalidEvent("schema", "amount", "amount must be >= 0"),
        "now_ms": NOW_MS,
    }
    args.update(overrides)
    record = dead_letter(**args)
    validate_output("dead-letters", record)
    DLQ.validate(record)
    orjson.dumps(record)
    return record


def test_invalid_event_record() -> None:
    record = build()
    assert record == {
        "event_id": "dlq:dev.purchases:2:99",
        "source_topic": "dev.purchases",
        "partition": 2,
        "offset": 99,
        "key": "c-1",
        "key_encoding": "utf-8",
        "error": {"reason": "schema", "field": "amount", "message": "amount must be >= 0"},
        "payload": '{"amount": -1}',
        "payload_encoding": "utf-8",
        "ts": "2023-11-14T22:13:20.000Z",
    }


def test_event_id_is_deterministic_and_independent_of_error_and_time() -> None:
    first = build()
    again = build(error=RuntimeError("boom"), now_ms=NOW_MS + 5000, raw=b"other")
    assert first["event_id"] == again["event_id"]
    assert build(offset=100)["event_id"] != first["event_id"]


def test_processing_error() -> None:
    record = build(error=ZeroDivisionError("division by zero"))
    assert record["error"] == {
        "reason": "processing_error",
        "field": None,
        "message": "ZeroDivisionError: division by zero",
    }


def test_error_from_validate_is_kept() -> None:
    raw = b'{"event_id": "e", "customer_id": "c", "ts": "2023-01-01T00:00:00", "action": "erase"}'
    with pytest.raises(InvalidEvent) as info:
        validate("privacy", raw)
    record = build(raw=raw, error=info.value)
    assert record["error"]["reason"] == "bad_ts"
    assert record["error"]["field"] == "ts"
    assert record["payload"] == raw.decode()


def test_non_utf8_payload_and_key_are_base64() -> None:
    raw = b"\xff\x00{binary"
    record = build(raw=raw, key=b"\xfe\xff")
    assert record["payload_encoding"] == "base64"
    assert base64.b64decode(record["payload"]) == raw
    assert record["key_encoding"] == "base64"
    assert base64.b64decode(record["key"]) == b"\xfe\xff"


def test_str_inputs_and_lone_surrogates() -> None:
    assert build(raw="{é}", key="ключ")["payload"] == "{é}"
    record = build(raw="x\ud800y")
    assert record["payload_encoding"] == "base64"
    assert base64.b64decode(record["payload"]) == "x\ud800y".encode("utf-8", "surrogatepass")


def test_missing_value_key_and_position() -> None:
    record = build(raw=None, key=None, partition=None, offset=None)
    assert (record["payload"], record["payload_encoding"]) == ("", "utf-8")
    assert (record["key"], record["key_encoding"]) == (None, "utf-8")
    assert (record["partition"], record["offset"]) == (-1, -1)
    assert record["event_id"] == "dlq:dev.purchases:-1:-1"


def test_text_payload_is_truncated_at_a_character_boundary() -> None:
    raw = ("é" * 600_000).encode()  # 1.2 MB of two-byte characters
    record = build(raw=raw)
    payload = record["payload"]
    assert record["payload_encoding"] == "utf-8"
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
    assert raw.startswith(payload.encode())
    assert len(payload.encode()) >= MAX_PAYLOAD_BYTES - 3
    assert "truncated" in record["error"]["message"]
    assert str(len(raw)) in record["error"]["message"]


def test_binary_payload_is_truncated_before_base64() -> None:
    raw = b"\xff" * 2_000_000
    record = build(raw=raw)
    assert record["payload_encoding"] == "base64"
    assert len(record["payload"]) <= MAX_PAYLOAD_BYTES
    assert raw.startswith(base64.b64decode(record["payload"]))
    assert "truncated" in record["error"]["message"]


def test_small_limit() -> None:
    record = build(raw=b"abcdef", max_payload_bytes=4)
    assert record["payload"] == "abcd"
    assert "truncated" in record["error"]["message"]
    assert "truncated" not in build(raw=b"abcd", max_payload_bytes=4)["error"]["message"]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("late", "late"), ("Bad TS!", "bad_ts_"), ("", "processing_error"), ("9x", "x")],
)
def test_caller_reasons_are_kept_or_sanitised(reason: str, expected: str) -> None:
    record = build(error=InvalidEvent(reason, None, "whatever"))
    assert record["error"]["reason"] == expected
