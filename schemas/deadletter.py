"""Build dead-letter records: what could not be processed, why, and the raw bytes.

A dead-letter record has the shape of ``schemas/dead-letters.schema.json``. The raw
payload and key are kept as text when they are valid UTF-8 and as base64
otherwise, so nothing is lost and the record is always valid JSON.
"""

from __future__ import annotations

import base64
import re

from models.eventtime import format_ts
from schemas.validation import InvalidEvent

__all__ = ["MAX_PAYLOAD_BYTES", "dead_letter", "dead_letter_id"]

MAX_PAYLOAD_BYTES = 1 << 20
"""Default cap (1 MiB) on the size of ``payload`` in a dead-letter record."""

_MAX_MESSAGE = 4000
_REASON_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def dead_letter_id(source_topic: str, partition: int, offset: int) -> str:
    """Return the deterministic id ``dlq:<topic>:<partition>:<offset>``.

    Examples
    --------
    >>> dead_letter_id("purchases", 3, 1200)
    'dlq:purchases:3:1200'
    """
    return f"dlq:{source_topic}:{partition}:{offset}"


def _as_bytes(value: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(value, str):
        # Lone surrogates cannot be UTF-8; keep them recoverable via base64.
        return value.encode("utf-8", "surrogatepass")
    return bytes(value)


def _encode(data: bytes, limit: int) -> tuple[str, str, bool]:
    """Return ``(text, encoding, truncated)`` for ``data`` cut to ``limit`` bytes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        keep = max(limit, 0) // 4 * 3
        cut = len(data) > keep
        return base64.b64encode(data[:keep] if cut else data).decode("ascii"), "base64", cut
    if len(data) <= limit:
        return text, "utf-8", False
    # A prefix of valid UTF-8 can only end in an incomplete character: drop it.
    return data[: max(limit, 0)].decode("utf-8", "ignore"), "utf-8", True


def _reason(value: object) -> str:
    reason = str(value).lower()[:64]
    if _REASON_RE.match(reason):
        return reason
    reason = re.sub(r"[^a-z0-9_]", "_", reason).lstrip("_0123456789")
    return reason or "processing_error"


def dead_letter(
    *,
    source_topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | bytearray | memoryview | str | None,
    raw: bytes | bytearray | memoryview | str | None,
    error: BaseException,
    now_ms: int,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
) -> dict[str, object]:
    """Build the dead-letter record of a message that could not be processed.

    Parameters
    ----------
    source_topic
        Full name of the topic the message came from.
    partition, offset
        Where the message was; ``None`` is recorded as -1 (unknown).
    key, raw
        The message key and value as received (``None`` when absent).
    error
        An :class:`~schemas.validation.InvalidEvent` (its reason, field and
        message are kept) or any other exception (reason ``processing_error``,
        message ``"<ExcType>: <message>"``).
    now_ms
        Wall clock in epoch ms: when the message was dead-lettered.
    max_payload_bytes
        The payload is cut to at most this many bytes of text (1 MiB by
        default); the error message then says so.

    Returns
    -------
    dict
        A record valid against ``dead-letters.schema.json``. Its ``event_id``
        depends only on topic, partition and offset.

    Examples
    --------
    >>> record = dead_letter(
    ...     source_topic="purchases", partition=0, offset=42, key=b"c1",
    ...     raw=b"{not json", error=InvalidEvent("invalid_json", None, "bad"),
    ...     now_ms=1700000000000)
    >>> record["event_id"], record["payload"], record["payload_encoding"]
    ('dlq:purchases:0:42', '{not json', 'utf-8')
    >>> record["error"]
    {'reason': 'invalid_json', 'field': None, 'message': 'bad'}
    >>> record = dead_letter(
    ...     source_topic="browsing", partition=1, offset=7, key=None, raw=b"\\xff\\xfe",
    ...     error=KeyError("x"), now_ms=1700000000000)
    >>> record["payload"], record["payload_encoding"], record["error"]["message"]
    ('//4=', 'base64', "KeyError: 'x'")
    >>> record["ts"]
    '2023-11-14T22:13:20.000Z'
    """
    partition = -1 if partition is None else int(partition)
    offset = -1 if offset is None else int(offset)
    field: str | None
    if isinstance(error, InvalidEvent):
        reason = _reason(error.reason)
        field = error.field if isinstance(error.field, str) else None
        message = str(error.message)
    else:
        reason = "processing_error"
        field = None
        try:
            detail = str(error)
        except Exception:  # pragma: no cover - a broken __str__
            detail = "<unprintable>"
        message = f"{type(error).__name__}: {detail}"
    message = message[:_MAX_MESSAGE]

    if raw is None:
        payload, payload_encoding = "", "utf-8"
    else:
        data = _as_bytes(raw)
        payload, payload_encoding, cut = _encode(data, max_payload_bytes)
        if cut:
            kept = len(payload) if payload_encoding == "base64" else len(payload.encode("utf-8"))
            message += f" [payload truncated: {len(data)} bytes, kept {kept} bytes of text]"

    if key is None:
        key_text, key_encoding = None, "utf-8"
    else:
        key_text, key_encoding, _ = _encode(_as_bytes(key), max_payload_bytes)

    return {
        "event_id": dead_letter_id(source_topic, partition, offset),
        "source_topic": source_topic,
        "partition": partition,
        "offset": offset,
        "key": key_text,
        "key_encoding": key_encoding,
        "error": {"reason": reason, "field": field, "message": message},
        "payload": payload,
        "payload_encoding": payload_encoding,
        "ts": format_ts(now_ms),
    }
