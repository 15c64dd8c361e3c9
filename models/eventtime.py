"""Event-time helpers: parse ``ts`` fields and turn them into UTC calendar days.

Every timestamp inside Segmenter is an integer number of milliseconds since the
Unix epoch (UTC). Days are UTC calendar days counted from the epoch, the
convention the buy-till-you-die literature uses for purchase days.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = [
    "MS_PER_DAY",
    "day_of",
    "format_ts",
    "parse_ts",
]

MS_PER_DAY = 86_400_000


def parse_ts(value: object) -> int:
    """Return epoch milliseconds for an RFC 3339 string with offset or an int.

    Parameters
    ----------
    value
        Either integer epoch milliseconds or an RFC 3339 / ISO 8601 string that
        carries a UTC offset (``Z`` or ``+hh:mm``).

    Raises
    ------
    ValueError
        For booleans, floats, naive datetimes and anything unparsable.

    Examples
    --------
    >>> parse_ts(1700000000000)
    1700000000000
    >>> parse_ts("2023-11-14T22:13:20Z")
    1700000000000
    >>> parse_ts("2023-11-14T23:13:20.5+01:00")
    1700000000500
    """
    if isinstance(value, bool):
        raise ValueError("ts must be an RFC 3339 string or integer epoch milliseconds")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"ts {value!r} is not an RFC 3339 timestamp") from exc
        if parsed.tzinfo is None:
            raise ValueError(f"ts {value!r} has no UTC offset")
        # Integer arithmetic avoids float rounding of sub-millisecond parts.
        delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    raise ValueError("ts must be an RFC 3339 string or integer epoch milliseconds")


def day_of(ts_ms: int) -> int:
    """Return the UTC calendar day (days since 1970-01-01) of ``ts_ms``.

    Examples
    --------
    >>> day_of(0), day_of(MS_PER_DAY - 1), day_of(MS_PER_DAY)
    (0, 0, 1)
    >>> day_of(-1)
    -1
    """
    return ts_ms // MS_PER_DAY


def format_ts(ts_ms: int) -> str:
    """Format epoch milliseconds as RFC 3339 in UTC with millisecond precision.

    Examples
    --------
    >>> format_ts(1700000000500)
    '2023-11-14T22:13:20.500Z'
    """
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"
