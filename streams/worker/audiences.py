"""Audiences: the compacted ``segment-memberships`` topic and the members endpoint.

``segment-memberships`` holds, per key ``customer_id|segment_type``, the
customer's current segment of that type (``churn`` for the churn-risk level),
or a tombstone once they are in none of them, opted out or were erased. The
records are emitted with the segment change that caused them, through the same
outbox (so with the same at-least-once discipline: a crash may repeat one,
never lose one). A consumer that reads the topic from the beginning has
today's audiences without replaying history.

``GET /segments/{segment_type}/{id}/members?cursor=…&limit=…`` pages through a
segment's members over the whole base. Each worker holds only its partitions'
customers: the cursor names a partition and the last key read there; the
worker that receives the request reads the partitions in turn, each from its
owner (itself, or the owner over HTTP, found in Faust's partition assignment),
until the page is full or the scan budget is spent. A page can hold fewer
members than ``limit`` (a sparse segment); follow ``next_cursor`` until it is
``null``. Each page costs at most :data:`SCAN_BUDGET` customer records read,
whatever the segment's size.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.customer import CustomerState, is_opted_out
from models.eventtime import format_ts
from streams.worker.faust_adapter import partition_db

__all__ = [
    "MEMBERSHIPS_TOPIC",
    "SCAN_BUDGET",
    "MemberPage",
    "decode_cursor",
    "encode_cursor",
    "membership_key",
    "membership_records",
    "membership_snapshot",
    "scan_members",
    "tombstones",
]

MEMBERSHIPS_TOPIC = "segment-memberships"
CHURN_TYPE = "churn"
#: Customer records one members request reads at most (all partitions together).
SCAN_BUDGET = 20_000
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
FAUST_OFFSET_KEY = b"__faust\0offset__"


def membership_key(customer_id: str, segment_type: str) -> bytes:
    """Key of a membership record.

    >>> membership_key("c1", "lifecycle")
    b'c1|lifecycle'
    """
    return f"{customer_id}|{segment_type}".encode()


def membership_records(result: Any) -> list[tuple[bytes, bytes | None]]:
    """The ``segment-memberships`` records of a processing result's output events.

    >>> from types import SimpleNamespace
    >>> change = {"customer_id": "c1", "segment_type": "value", "current": "high",
    ...           "label": "High value", "ts": "2026-01-01T00:00:00.000Z", "event_id": "e1"}
    >>> left = dict(change, segment_type="nps", current=None)
    >>> [(k, v is None) for k, v in membership_records(
    ...     SimpleNamespace(segment_changes=[change, left], churn_events=[]))]
    [(b'c1|value', False), (b'c1|nps', True)]
    """
    records: list[tuple[bytes, bytes | None]] = []
    for change in result.segment_changes:
        seg_type, current = change["segment_type"], change["current"]
        key = membership_key(change["customer_id"], seg_type)
        if current is None:
            records.append((key, None))
            continue
        records.append(
            (
                key,
                orjson.dumps(
                    {
                        "customer_id": change["customer_id"],
                        "segment_type": seg_type,
                        "segment": current,
                        "label": change["label"],
                        "ts": change["ts"],
                        "event_id": change["event_id"],
                    }
                ),
            )
        )
    for churn in result.churn_events:
        records.append(
            (
                membership_key(churn["customer_id"], CHURN_TYPE),
                orjson.dumps(
                    {
                        "customer_id": churn["customer_id"],
                        "segment_type": CHURN_TYPE,
                        "segment": churn["level"],
                        "label": f"{churn['level'].capitalize()} churn risk",
                        "ts": churn["ts"],
                        "event_id": churn["event_id"],
                    }
                ),
            )
        )
    return records


def membership_snapshot(customer_id: str, state: CustomerState) -> list[tuple[bytes, bytes]]:
    """Records of every current segment of a customer recorded before this topic existed.

    A worker upgraded to a version with ``segment-memberships`` publishes them
    the first time it evaluates such a customer (their record has no KPI
    contribution yet), so the topic holds every customer within a day of stream
    time, not only those who changed since. ``event_id`` is then a
    deterministic id of the membership.

    >>> state = {"seg": {"value": {"current": "mid", "since_ms": 0, "label": "Mid value"}},
    ...          "churn": {"level": "low", "since_ms": 0}}
    >>> [key for key, _ in membership_snapshot("c1", state)]
    [b'c1|value', b'c1|churn']
    """
    from models.processing import output_event_id

    records = []
    entries = [
        (t, e.get("current"), e.get("label"), e.get("since_ms"))
        for t, e in (state.get("seg") or {}).items()
    ]
    churn = state.get("churn") or {}
    level = churn.get("level")
    if level:
        entries.append(
            (CHURN_TYPE, level, f"{level.capitalize()} churn risk", churn.get("since_ms"))
        )
    for seg_type, segment, label, since in entries:
        if segment is None:
            continue
        ts = format_ts(since if isinstance(since, int) else 0)
        value = {
            "customer_id": customer_id,
            "segment_type": seg_type,
            "segment": segment,
            "label": label or segment,
            "ts": ts,
            "event_id": output_event_id(customer_id, "membership", seg_type, segment, ts),
        }
        records.append((membership_key(customer_id, seg_type), orjson.dumps(value)))
    return records


def tombstones(
    customer_id: str, state: CustomerState, only: tuple[str, ...] | None = None
) -> list[bytes]:
    """Keys to tombstone for a customer leaving every segment (of the types ``only``).

    >>> state = {"seg": {"lifecycle": {"current": "active"}, "nps": {"current": None}},
    ...          "churn": {"level": "low"}}
    >>> tombstones("c1", state)
    [b'c1|lifecycle', b'c1|churn']
    """
    types = [t for t, entry in (state.get("seg") or {}).items() if entry.get("current")]
    if (state.get("churn") or {}).get("level"):
        types.append(CHURN_TYPE)
    return [membership_key(customer_id, t) for t in types if only is None or t in only]


# --------------------------------------------------------------------------- paging


def encode_cursor(partition: int, key: bytes | None) -> str:
    """An opaque page cursor: the partition and the last key read there.

    >>> decode_cursor(encode_cursor(3, b'"c17"'))
    (3, b'"c17"')
    """
    raw = orjson.dumps([partition, key.hex() if key is not None else None])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, bytes | None]:
    """Inverse of :func:`encode_cursor`; ``ValueError`` for anything else.

    >>> decode_cursor("nonsense")
    Traceback (most recent call last):
    ...
    ValueError: invalid cursor: pass the next_cursor of the previous page as it is
    """
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        partition, key = orjson.loads(raw)
        if not isinstance(partition, int) or partition < 0:
            raise ValueError
        return partition, None if key is None else bytes.fromhex(key)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise ValueError(
            "invalid cursor: pass the next_cursor of the previous page as it is"
        ) from None


@dataclass
class MemberPage:
    """Members found in one partition, and where the scan stopped."""

    members: list[dict[str, Any]] = field(default_factory=list)
    last_key: bytes | None = None  # the last key read (the next scan starts after it)
    exhausted: bool = False  # the partition has nothing after last_key
    scanned: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "members": self.members,
            "last_key": None if self.last_key is None else self.last_key.hex(),
            "exhausted": self.exhausted,
            "scanned": self.scanned,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemberPage:
        key = data.get("last_key")
        return cls(
            list(data.get("members") or []),
            None if key is None else bytes.fromhex(key),
            bool(data.get("exhausted")),
            int(data.get("scanned") or 0),
        )


def _items(
    store: Any, partition: int, after: bytes | None, belongs: Callable[[bytes], bool]
) -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` of ``partition`` in key order, after ``after``."""
    db = partition_db(store, partition)
    if db is not None:
        items = db.items(from_key=after) if after is not None else db.items()
        for key, value in items:
            key = bytes(key)
            if key in (after, FAUST_OFFSET_KEY):
                continue
            yield key, bytes(value)
        return
    memory = getattr(store, "data", store)  # memory:// (tests): one dict, every partition
    for key in sorted(k for k in memory if isinstance(k, bytes)):
        if (after is None or key > after) and belongs(key):
            yield key, memory[key]


def scan_members(
    store: Any,
    partition: int,
    segment_type: str,
    segment: str,
    after: bytes | None,
    limit: int,
    budget: int,
    belongs: Callable[[bytes], bool] = lambda key: True,
) -> MemberPage:
    """Members of ``segment_type``/``segment`` stored for ``partition`` after key ``after``.

    Reads at most ``budget`` records (a substring test skips decoding those that
    cannot match) and returns at most ``limit`` members.

    >>> store = {b'"a"': orjson.dumps({"seg": {"value": {"current": "high", "since_ms": 0,
    ...                                                   "label": "High value"}}}),
    ...          b'"b"': orjson.dumps({"seg": {"value": {"current": "low", "since_ms": 0}}})}
    >>> page = scan_members(store, 0, "value", "high", None, 10, 100)
    >>> [m["customer_id"] for m in page.members], page.exhausted, page.scanned
    (['a'], True, 2)
    """
    page = MemberPage(last_key=after)
    needle = orjson.dumps(segment)
    for key, value in _items(store, partition, after, belongs):
        if page.scanned >= budget or len(page.members) >= limit:
            return page
        page.scanned += 1
        page.last_key = key
        if needle not in value:
            continue
        member = _member(orjson.loads(key), orjson.loads(value), segment_type, segment)
        if member is not None:
            page.members.append(member)
    page.exhausted = True
    return page


def _member(
    customer_id: str, state: CustomerState, segment_type: str, segment: str
) -> dict[str, Any] | None:
    if is_opted_out(state):
        return None
    label: str | None
    if segment_type == CHURN_TYPE:
        churn = state.get("churn") or {}
        if churn.get("level") != segment:
            return None
        since, label = churn.get("since_ms"), f"{segment.capitalize()} churn risk"
    else:
        entry = (state.get("seg") or {}).get(segment_type) or {}
        if entry.get("current") != segment:
            return None
        since, label = entry.get("since_ms"), entry.get("label")
    return {
        "customer_id": customer_id,
        "since": format_ts(since) if isinstance(since, int) else None,
        "label": label,
    }
