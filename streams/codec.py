"""How output events are serialised (tables use Faust's orjson-backed JSON codec)."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["encode"]


def encode(value: Any) -> bytes:
    """Serialise a JSON value with orjson.

    >>> encode({"a": 1})
    b'{"a":1}'
    """
    return orjson.dumps(value)
