"""Per-customer, per-topic memory of recent event ids: ``new``, ``duplicate`` or ``late``.

Contract with the streams code: the memory is a plain JSON-serialisable dict
that lives in the same customer table value as the feature state, under the key
``"dedup"`` (``{"f": models.features state, "dedup": new_dedup(), ...}``). For
every event the streams code calls
``check(state["dedup"], topic, event["event_id"], event["ts"], window_ms=...)``
*before* :func:`models.features.apply_event` and applies the event only when the
answer is ``"new"`` (``models.features`` does no de-duplication itself). Both are
written in the same table value, so they can never disagree after a crash.
``forget_all`` (or replacing the value with ``new_dedup()``) erases it.

Layout (one entry per source topic, format ``v`` = 2)::

    {"purchases": {"v": 2,
                   "hi": 1700000000000,   # largest ts seen on this topic
                   "fl": 1699990000000,   # overflow floor (None until overflow)
                   "sw": 1700000000000,   # "hi" at the last expiry sweep
                   "b": 1699395200000,    # base of the packed timestamps
                   "w": 4,                # bytes per packed timestamp (4, 6 or 8)
                   "h": "n8Qq9Pc7...",    # keys: 8 base64 chars per remembered id
                   "t": "AAEC..."},       # base64 of the ts - b, w bytes each, LE
     ...}

The memory is serialised with the whole customer state on every event, so it is
packed: record ``i`` is the key ``h[8 * i: 8 * i + 8]`` and the timestamp
``b + time_at(t, w, i)``. A key is :func:`id_key` of the event id: the first 48
bits of its BLAKE2b-64 digest in base64 (a 6-byte group is exactly 8 aligned
base64 characters, so membership is a ``str.find`` on ``h`` without decoding).
Timestamps keep their exact milliseconds. JSON size is ``8 + 4 * w / 3`` bytes
per remembered id (13.3 with the usual ``w`` = 4; ``w`` grows only when the
remembered span exceeds 49 days), down from about 34 in the old layout. Appending
re-encodes only the last base64 group of ``t``. Chance that a new id is wrongly
taken for a duplicate: ``n / 2**48`` per check with ``n`` ids held (below 4e-12
at ``max_ids``); the full 64-bit digest used before was ``n / 2**64``.

Format 1 (``{"hi", "fl", "sw", "ids": {16-hex-digit digest: ts}}``, no ``v``)
is still read: an entry is converted to format 2 the first time :func:`check`
touches it, keeping every id (the first 12 hex digits are its new key) and ts,
so the answers are the same as if it had never been converted.

Answers are deterministic functions of the memory, independent of when expiry
sweeps happen, of the order in which records are held, and of ``b`` and ``w``:

1. ``late`` when ``ts < hi - window_ms`` (``hi`` *before* this event) or
   ``ts < fl`` (the overflow floor);
2. otherwise ``duplicate`` when the id is remembered;
3. otherwise ``new``: the id is remembered with its ts.

Ids older than ``hi - window_ms`` can never be asked about again without being
``late``, so they are swept (lazily, whenever ``hi`` has advanced by an eighth of
the window). When more than ``max_ids`` ids are held after a sweep, the oldest
by ts are dropped (at least one; in batches down to ``max_ids - max_ids // 16``,
plus any ids sharing the last dropped ts, so an overflow sort happens at most
once per ``max_ids // 16`` checks) and the
floor is raised to the oldest remaining ts, so every dropped id is older than the
floor and is answered ``late``, never wrongly ``new``. Cost: ~2 µs per check
(hash included, 200 ids held, idle core); a sweep or an overflow decodes the
timestamps once (a C-level array for ``w`` = 4).

Examples
--------
>>> mem = new_dedup()
>>> day = 86_400_000
>>> check(mem, "purchases", "e1", 10 * day, window_ms=7 * day)
'new'
>>> check(mem, "purchases", "e1", 10 * day, window_ms=7 * day)
'duplicate'
>>> check(mem, "purchases", "e0", 2 * day, window_ms=7 * day)
'late'
>>> check(mem, "browsing", "e1", 10 * day, window_ms=7 * day)
'new'
"""

from __future__ import annotations

import sys
from array import array
from binascii import a2b_base64, b2a_base64
from collections.abc import MutableSequence, Sequence
from hashlib import blake2b
from typing import Any

__all__ = [
    "DEFAULT_MAX_IDS",
    "FORMAT",
    "append_time",
    "check",
    "decode_times",
    "encode_times",
    "forget_all",
    "id_count",
    "id_key",
    "new_dedup",
    "pack_offsets",
    "set_time",
    "time_at",
]

DEFAULT_MAX_IDS = 1024
FORMAT = 2
"""Layout version written in every topic entry (``"v"``)."""

_KEY_CHARS = 8
_PENDING = 8  # offsets kept as a JSON list before being packed
_U32 = next(code for code in "IL" if array(code).itemsize == 4)
_SWAP = sys.byteorder != "little"


# --------------------------------------------------------------------------- packing


def id_key(text: str) -> str:
    """Return the 8-character key of an id: 48 bits of BLAKE2b-64, base64.

    The key is the first 6 bytes of ``blake2b(text, digest_size=8)``, so a
    format-1 hex digest ``d`` maps to the key of the same id via
    ``d[:12]``. Also used by :mod:`models.features` for session ids.

    Examples
    --------
    >>> id_key("e1"), len(id_key("any id at all"))
    ('G11eUfVP', 8)
    """
    digest = blake2b(text.encode(), digest_size=8).digest()
    return b2a_base64(digest[:6], newline=False).decode()


def _key_of_hex(digest_hex: str) -> str:
    return b2a_base64(bytes.fromhex(digest_hex[:12]), newline=False).decode("ascii")


def _width(span: int) -> int:
    return 4 if span < 1 << 32 else 6 if span < 1 << 48 else 8


def encode_times(values: Sequence[int], floor: int | None = None) -> tuple[int, int, str]:
    """Pack absolute timestamps as ``(base, width, text)``.

    ``base`` is the smallest of ``values`` and ``floor``; each value is stored as
    ``value - base`` in ``width`` little-endian bytes (4, or 6/8 when the span
    needs it), and ``text`` is the base64 of the concatenation.

    Examples
    --------
    >>> encode_times([1_000_005, 1_000_000, 1_000_007])
    (1000000, 4, 'BQAAAAAAAAAHAAAA')
    >>> base, width, text = encode_times([5], floor=3)
    >>> [base + t for t in decode_times(text, width)]
    [5]
    """
    if values:
        base = min(values) if floor is None else min(min(values), floor)
        width = _width(max(values) - base)
    else:
        base = 0 if floor is None else floor
        width = 4
    return base, width, pack_offsets([value - base for value in values], width)


def pack_offsets(offsets: Sequence[int], width: int) -> str:
    """Base64 of non-negative ``offsets``, ``width`` little-endian bytes each."""
    if width == 4:
        packed = array(_U32, offsets)
        if _SWAP:  # pragma: no cover - big-endian hosts
            packed.byteswap()
        raw = packed.tobytes()
    else:
        raw = b"".join(offset.to_bytes(width, "little") for offset in offsets)
    return b2a_base64(raw, newline=False).decode("ascii")


def decode_times(text: str, width: int) -> MutableSequence[int]:
    """Unpack every offset of ``text`` (add the base to get the timestamps).

    Examples
    --------
    >>> list(decode_times(pack_offsets([3, 1, 2], 6), 6))
    [3, 1, 2]
    """
    raw = a2b_base64(text)
    if width == 4:
        packed = array(_U32, raw)
        if _SWAP:  # pragma: no cover - big-endian hosts
            packed.byteswap()
        return packed
    return [int.from_bytes(raw[i : i + width], "little") for i in range(0, len(raw), width)]


def _chars(width: int, index: int) -> tuple[int, int, int]:
    """Base64 characters ``[c0, c1)`` covering record ``index``, and its byte skip."""
    lo = index * width
    group = lo // 3
    return group * 4, -(-(lo + width) // 3) * 4, lo - group * 3


def time_at(text: str, width: int, index: int) -> int:
    """Offset number ``index`` of ``text``, decoding only its base64 groups.

    Examples
    --------
    >>> [time_at(pack_offsets([7, 8, 9, 10], 4), 4, i) for i in range(4)]
    [7, 8, 9, 10]
    """
    c0, c1, skip = _chars(width, index)
    return int.from_bytes(a2b_base64(text[c0:c1])[skip : skip + width], "little")


def set_time(text: str, width: int, index: int, offset: int) -> str:
    """Return ``text`` with offset number ``index`` replaced (re-encodes its groups only).

    Examples
    --------
    >>> text = set_time(pack_offsets([7, 8, 9, 10], 4), 4, 2, 99)
    >>> list(decode_times(text, 4)) == [7, 8, 99, 10], text == pack_offsets([7, 8, 99, 10], 4)
    (True, True)
    """
    c0, c1, skip = _chars(width, index)
    raw = bytearray(a2b_base64(text[c0:c1]))
    raw[skip : skip + width] = offset.to_bytes(width, "little")
    return text[:c0] + b2a_base64(raw, newline=False).decode("ascii") + text[c1:]


def append_time(text: str, nbytes: int, chunk: bytes) -> str:
    """Return ``text`` (base64 of ``nbytes`` bytes) with ``chunk`` appended.

    Only the trailing partial base64 group is decoded and re-encoded, so the
    cost does not grow with the length; the result is the canonical base64.

    Examples
    --------
    >>> text = ""
    >>> for i in range(5):
    ...     text = append_time(text, 4 * i, i.to_bytes(4, "little"))
    >>> text == pack_offsets(range(5), 4)
    True
    """
    cut = nbytes // 3 * 4
    return text[:cut] + b2a_base64(a2b_base64(text[cut:]) + chunk, newline=False).decode("ascii")


# --------------------------------------------------------------------------- memory


def new_dedup() -> dict[str, Any]:
    """Return an empty dedup memory (the value of ``state["dedup"]``).

    Examples
    --------
    >>> new_dedup()
    {}
    """
    return {}


def forget_all(state_dedup: dict[str, Any]) -> None:
    """Forget every remembered id and floor, in place (privacy erase / opt-out).

    Examples
    --------
    >>> mem = new_dedup()
    >>> check(mem, "feedback", "x", 5, window_ms=10)
    'new'
    >>> forget_all(mem)
    >>> mem
    {}
    """
    state_dedup.clear()


def id_count(state_dedup: dict[str, Any]) -> int:
    """Return how many ids are remembered over all topics (either format).

    Examples
    --------
    >>> mem = new_dedup()
    >>> for i in range(3):
    ...     _ = check(mem, "support", f"e{i}", i, window_ms=100)
    >>> id_count(mem)
    3
    """
    return sum(
        len(entry["h"]) // _KEY_CHARS if "h" in entry else len(entry["ids"])
        for entry in state_dedup.values()
    )


def check(
    state_dedup: dict[str, Any],
    topic: str,
    event_id: str,
    ts_ms: int,
    *,
    window_ms: int,
    max_ids: int = DEFAULT_MAX_IDS,
) -> str:
    """Classify an event as ``"new"`` (and remember it), ``"duplicate"`` or ``"late"``.

    Parameters
    ----------
    state_dedup
        The memory, ``state["dedup"]`` of the customer; mutated in place.
    topic
        Source topic (without prefix); each topic has its own memory and clock.
    event_id
        The event's ``event_id``.
    ts_ms
        The event's time, integer epoch milliseconds.
    window_ms
        How far behind the newest ts of this topic an event may be and still
        be accepted (``dedup_window_days`` in milliseconds).
    max_ids
        Most ids remembered per topic; overflow raises the floor (see module
        docstring).

    Returns
    -------
    str
        ``"new"``, ``"duplicate"`` or ``"late"``.

    Examples
    --------
    Overflow: with room for two ids, a third drops the oldest and raises the floor.

    >>> mem = new_dedup()
    >>> [check(mem, "t", e, ts, window_ms=1000, max_ids=2) for e, ts in
    ...  [("a", 1), ("b", 2), ("c", 3)]]
    ['new', 'new', 'new']
    >>> mem["t"]["fl"], id_count(mem)
    (2, 2)
    >>> check(mem, "t", "a", 1, window_ms=1000, max_ids=2)
    'late'
    >>> check(mem, "t", "b", 2, window_ms=1000, max_ids=2)
    'duplicate'
    """
    entry = state_dedup.get(topic)
    if entry is None:
        entry = state_dedup[topic] = {
            "v": FORMAT,
            "hi": ts_ms,
            "fl": None,
            "sw": ts_ms,
            "b": ts_ms - window_ms,
            "w": 4,
            "h": "",
            "t": "",
            "p": [],
        }
    elif entry.get("v") != FORMAT:
        entry = state_dedup[topic] = _upgrade(entry, window_ms)
    hi = entry["hi"]
    if ts_ms < hi - window_ms:
        return "late"
    floor = entry["fl"]
    if floor is not None and ts_ms < floor:
        return "late"
    keys = entry["h"]
    key = b2a_base64(blake2b(event_id.encode(), digest_size=8).digest()[:6], newline=False).decode()
    at = keys.find(key)
    while at & 7 and at > 0:  # a match straddling two keys is not a key
        at = keys.find(key, at + 1)
    if at >= 0:
        return "duplicate"
    entry["h"] = keys = keys + key
    offset = ts_ms - entry["b"]
    if offset >= 0 and not offset >> (entry["w"] << 3):
        pending = entry["p"]
        pending.append(offset)
        if len(pending) >= _PENDING:
            _flush(entry)
    else:  # outside the packed range: re-pack with a new base / width
        values = _timestamps(entry)
        values.append(ts_ms)
        _repack(entry, keys, values, hi - window_ms)
    if ts_ms > hi:
        entry["hi"] = hi = ts_ms
        if hi - entry["sw"] >= window_ms >> 3:
            _sweep(entry, hi - window_ms)
    if len(entry["h"]) > max_ids << 3:
        _sweep(entry, hi - window_ms)
        if len(entry["h"]) > max_ids << 3:
            _overflow(entry, max_ids)
    return "new"


def _upgrade(entry: dict[str, Any], window_ms: int) -> dict[str, Any]:
    """Convert a format-1 entry (``"ids": {hex digest: ts}``) to format 2."""
    ids: dict[str, int] = entry.get("ids") or {}
    new = {"v": FORMAT, "hi": entry["hi"], "fl": entry["fl"], "sw": entry["sw"]}
    _repack(new, "".join(map(_key_of_hex, ids)), list(ids.values()), entry["hi"] - window_ms)
    return new


def _repack(entry: dict[str, Any], keys: str, values: Sequence[int], floor: int) -> None:
    """Store ``keys`` with absolute ``values``, choosing a new base and width."""
    entry["b"], entry["w"], entry["t"] = encode_times(values, floor)
    entry["h"] = keys
    entry["p"] = []


def _offsets(entry: dict[str, Any]) -> MutableSequence[int]:
    """Every offset, packed ones then pending ones (the order of the keys)."""
    offsets = decode_times(entry["t"], entry["w"])
    pending = entry["p"]
    if not pending:
        return offsets
    if isinstance(offsets, array):
        offsets.extend(pending)
        return offsets
    return [*offsets, *pending]


def _timestamps(entry: dict[str, Any]) -> list[int]:
    """Every remembered ts (absolute), in the order of the keys."""
    base = entry["b"]
    return [base + offset for offset in _offsets(entry)]


def _flush(entry: dict[str, Any]) -> None:
    """Append the pending offsets to the packed ones."""
    pending = entry["p"]
    width = entry["w"]
    done = (len(entry["h"]) >> 3) - len(pending)
    if width == 4:
        packed = array(_U32, pending)
        if _SWAP:  # pragma: no cover - big-endian hosts
            packed.byteswap()
        chunk = packed.tobytes()
    else:
        chunk = b"".join(offset.to_bytes(width, "little") for offset in pending)
    entry["t"] = append_time(entry["t"], done * width, chunk)
    entry["p"] = []


def _sweep(entry: dict[str, Any], cutoff: int) -> None:
    """Drop ids older than ``cutoff`` (they can only be answered ``late`` now)."""
    entry["sw"] = entry["hi"]
    keys = entry["h"]
    if not keys:
        return
    offsets = _offsets(entry)
    cut = cutoff - entry["b"]
    # Ids mostly arrive in ts order: the stale ones are usually a prefix.
    n = len(offsets)
    lead = 0
    while lead < n and offsets[lead] < cut:
        lead += 1
    rest = offsets[lead:] if lead else offsets
    if lead == n or min(rest) >= cut:
        if not lead:
            return
        entry["h"] = keys[lead << 3 :]
        entry["t"] = pack_offsets(rest, entry["w"])
    else:
        kept = [i for i in range(lead, n) if offsets[i] >= cut]
        entry["h"] = "".join([keys[i << 3 : (i + 1) << 3] for i in kept])
        entry["t"] = pack_offsets([offsets[i] for i in kept], entry["w"])
    entry["p"] = []


def _overflow(entry: dict[str, Any], max_ids: int) -> None:
    """Drop the oldest ids (with their ties) and raise the floor above them."""
    keys = entry["h"]
    offsets = _offsets(entry)
    ordered = sorted(offsets)
    n = len(ordered)
    drop = max(1, n - max_ids + max_ids // 16)
    cut = ordered[drop - 1]
    # Ties with the last dropped id go too, so every dropped ts is below the floor.
    while drop < n and ordered[drop] == cut:
        drop += 1
    kept = [i for i in range(n) if offsets[i] > cut]
    entry["h"] = "".join([keys[i << 3 : (i + 1) << 3] for i in kept])
    entry["t"] = pack_offsets([offsets[i] for i in kept], entry["w"])
    entry["p"] = []
    floor = entry["b"] + (ordered[drop] if drop < n else cut + 1)
    if entry["fl"] is None or floor > entry["fl"]:
        entry["fl"] = floor
