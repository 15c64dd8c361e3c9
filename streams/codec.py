"""Bytes in, bytes out: customer states and output events, serialised once with orjson."""

from __future__ import annotations

from typing import Any

import orjson

from models.customer import CustomerState

__all__ = ["decode_state", "encode"]


def encode(value: Any) -> bytes:
    """Serialise a JSON value with orjson.

    >>> encode({"a": 1})
    b'{"a":1}'
    """
    return orjson.dumps(value)


def decode_state(raw: bytes | None) -> CustomerState | None:
    """Deserialise a stored customer state (``None`` for a missing key).

    >>> decode_state(b'{"seq":3}')
    {'seq': 3}
    >>> decode_state(None) is None
    True
    """
    if raw is None:
        return None
    value: CustomerState = orjson.loads(raw)
    return value
