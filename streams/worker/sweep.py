"""Walk a partition's customers a chunk at a time, for timers over the stream clock."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.btyd_summary import BTYDSummary
from models.customer import CustomerState
from models.processing import btyd_row, spend_row
from models.spend_summary import SpendSummary
from streams.worker.faust_adapter import partition_db

__all__ = ["CustomerStats", "PartitionSweep", "customer_stats", "partition_keys"]

FAUST_OFFSET_KEY = b"__faust\0offset__"


def partition_keys(
    table: Any, partition: int, after: bytes | None, limit: int
) -> tuple[list[str], bytes | None]:
    """Up to ``limit`` customer ids stored for ``partition`` after the cursor ``after``.

    Returns the ids and the cursor for the next call. Works on the RocksDB
    store (one database per partition, keys JSON-encoded by Faust) and, for
    tests, on the in-memory store (which does not separate partitions).
    """
    store = table.data
    raw_keys: list[bytes] = []
    db = partition_db(store, partition)
    if db is not None:
        for key in db.keys(from_key=after) if after is not None else db.keys():
            if key in (after, FAUST_OFFSET_KEY):
                continue
            raw_keys.append(bytes(key))
            if len(raw_keys) >= limit:
                break
    else:
        # (StateTable writes the encoded keys into the memory store's dict)
        memory = getattr(store, "data", store)
        ordered = sorted(k if isinstance(k, bytes) else orjson.dumps(k) for k in memory)
        raw_keys = [k for k in ordered if after is None or k > after][:limit]
    ids = [orjson.loads(k) for k in raw_keys]
    return ids, (raw_keys[-1] if raw_keys else after)


@dataclass
class PartitionSweep:
    """Progress of one pass over a partition, with the statistics it gathers."""

    cursor: bytes | None = None
    clock_ms: int = 0  # stream clock the pass started at
    sizes: dict[str, Counter[str]] = field(default_factory=dict)
    churn_levels: Counter[str] = field(default_factory=Counter)
    customers: int = 0
    # The partition's BTYD sufficient statistics, rebuilt by every pass.
    btyd: BTYDSummary = field(default_factory=BTYDSummary)
    # Repeat customers' (frequency, monetary_value): the Gamma-Gamma fit of the CLV.
    spend: SpendSummary = field(default_factory=SpendSummary)

    def count(self, state: CustomerState) -> None:
        """Add one customer's segments, churn level, BTYD and spend rows to the statistics."""
        self.add(customer_stats(state))

    def add(self, stats: CustomerStats) -> None:
        """Add what :func:`customer_stats` read from a customer's state."""
        segments, level, row, spend = stats
        self.customers += 1
        if row is not None:
            self.btyd.add(*row)
            if spend is not None:
                self.spend.add(*spend)
        sizes = self.sizes
        for seg_type, current in segments:
            counts = sizes.get(seg_type)
            if counts is None:
                counts = sizes[seg_type] = Counter()
            counts[current] += 1
        if level:
            self.churn_levels[level] += 1


CustomerStats = tuple[
    tuple[tuple[str, str], ...], str | None, Sequence[int] | None, tuple[int, float] | None
]
"""A customer's part of a pass's statistics: (segment type, current segment) pairs,
churn level, BTYD row and spend row."""


def customer_stats(state: CustomerState) -> CustomerStats:
    """What a customer adds to the pass's statistics (kept with their due day, so a
    pass that skips them need not read their state; the index shares equal values).

    >>> customer_stats({"seg": {"lifecycle": {"current": "active"}, "nps": {"current": None}},
    ...                 "churn": {"level": "low"}})
    ((('lifecycle', 'active'),), 'low', None, None)
    """
    row = btyd_row(state)
    segments = tuple(
        (seg_type, current)
        for seg_type, entry in state.get("seg", {}).items()
        if (current := entry.get("current")) is not None
    )
    return (
        segments,
        state.get("churn", {}).get("level"),
        None if row is None else tuple(row),
        None if row is None else spend_row(state),
    )
