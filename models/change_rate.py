"""How often customers change cluster: changes per customer over 30 days of stream time.

Campaigns keyed on behavioural clusters chase noise when customers hop
between them; a steady customer base should see fewer than 0.1 cluster
changes per customer per 30 days. Each partition counts its customers'
cluster changes (first assignments excluded) per day of stream time in a
small ``{day: count}`` dict that travels with the partition's statistics, and
the worker exports ``changes in the last 30 days / customers``.

Examples
--------
>>> counts = {}
>>> add_changes(counts, day=100, n=3)
>>> add_changes(counts, day=125, n=2)
>>> changes_since(counts, first_day=96)
5
>>> prune(counts, today=131)  # keeps the 30 days up to today
{'125': 2}
>>> change_rate([{"125": 2}, {"130": 1}], customers=30, today=131)
0.1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["WINDOW_DAYS", "add_changes", "change_rate", "changes_since", "prune"]

WINDOW_DAYS = 30
"""Days of stream time the rate covers."""


def add_changes(counts: dict[str, int], day: int, n: int = 1) -> None:
    """Count ``n`` cluster changes on ``day`` (days since the epoch, UTC)."""
    key = str(day)
    counts[key] = counts.get(key, 0) + n


def changes_since(counts: Mapping[str, int], first_day: int) -> int:
    """Changes on ``first_day`` or later."""
    return sum(n for day, n in counts.items() if int(day) >= first_day)


def prune(counts: Mapping[str, int], today: int, window: int = WINDOW_DAYS) -> dict[str, int]:
    """The counts of the ``window`` days ending with ``today``."""
    first = today - window + 1
    return {day: n for day, n in counts.items() if int(day) >= first}


def change_rate(
    partitions: Iterable[Mapping[str, int]], customers: int, today: int, window: int = WINDOW_DAYS
) -> float:
    """Cluster changes per customer over the ``window`` days ending with ``today``."""
    if customers <= 0:
        return 0.0
    first = today - window + 1
    return sum(changes_since(counts, first) for counts in partitions) / customers
