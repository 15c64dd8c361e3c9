"""The whole customer base's buy-till-you-die sufficient statistics, compressed.

BG/NBD and Pareto/NBD see a customer only through ``(x, t_x, T)``: repeat
purchase days, days from the first to the last purchase day, days from the
first purchase day to the clock. ``T`` grows with the clock, so the table
keeps ``(x, t_x, first purchase day)`` with a count of customers per distinct
row, and computes ``T`` at fit time. Whole-day summaries repeat a lot (most
customers of a shop have ``x = 0``), so the table has far fewer rows than the
base has customers, and a fit on it costs O(distinct rows).

When the table would exceed ``max_rows``, the time resolution doubles
(``t_x`` is rounded to the nearest multiple of ``resolution_days`` and the
first day moved to the middle of its ``resolution_days`` bucket: no bias on
average), which merges rows: the table stays bounded however large the base
grows, at the price of day-level precision on ``t_x`` and ``T`` (``t_x`` is
capped at ``T`` when the table is read).

Every sweep over a partition rebuilds that partition's table from the
customers it holds (``streams.worker.sweep``), so a table never drifts from the
customers it describes, and an erased customer leaves it at the next pass.

Examples
--------
>>> s = BTYDSummary()
>>> for x, tx, first in [(0, 0, 100), (0, 0, 100), (2, 30, 90)]:
...     s.add(x, tx, first)
>>> len(s), s.n_customers
(2, 3)
>>> x, tx, T, w = s.table(day=130)
>>> x.tolist(), tx.tolist(), T.tolist(), w.tolist()
([0.0, 2.0], [0.0, 30.0], [30.0, 40.0], [2.0, 1.0])
>>> BTYDSummary.from_dict(s.to_dict()).table(130)[3].tolist()
[2.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["BTYDSummary"]


class BTYDSummary:
    """Counts of customers by ``(frequency, recency, first purchase day)``.

    Parameters
    ----------
    resolution_days
        Time resolution of ``recency`` and the first day (1 = exact days).
    max_rows
        Most distinct rows kept; beyond, the resolution doubles.
    """

    def __init__(self, resolution_days: int = 1, max_rows: int = 20_000) -> None:
        if resolution_days < 1 or max_rows < 1:
            raise ValueError("resolution_days and max_rows must be >= 1")
        self.resolution_days = int(resolution_days)
        self.max_rows = int(max_rows)
        self.counts: dict[tuple[int, int, int], int] = {}

    def __len__(self) -> int:
        return len(self.counts)

    def __repr__(self) -> str:
        return (
            f"BTYDSummary(resolution_days={self.resolution_days}, max_rows={self.max_rows}, "
            f"rows={len(self)}, customers={self.n_customers})"
        )

    @property
    def n_customers(self) -> int:
        """Customers counted in the table."""
        return sum(self.counts.values())

    def _key(self, frequency: int, recency: int, first_day: int) -> tuple[int, int, int]:
        res = self.resolution_days
        if res == 1:
            return int(frequency), int(recency), int(first_day)
        # Unbiased: recency to the nearest multiple, the first day to its bucket's middle.
        return (
            int(frequency),
            (int(recency) + res // 2) // res * res,
            int(first_day) // res * res + res // 2,
        )

    def add(self, frequency: int, recency: int, first_day: int, n: int = 1) -> None:
        """Count ``n`` customers with this summary (``n < 0`` removes them).

        Examples
        --------
        >>> s = BTYDSummary()
        >>> s.add(1, 5, 10); s.add(1, 5, 10, n=-1)
        >>> len(s)
        0
        """
        key = self._key(frequency, recency, first_day)
        count = self.counts.get(key, 0) + int(n)
        if count > 0:
            self.counts[key] = count
        else:
            self.counts.pop(key, None)
        if len(self.counts) > self.max_rows:
            self.coarsen(self.resolution_days * 2)

    def coarsen(self, resolution_days: int) -> None:
        """Re-bucket every row at ``resolution_days`` (a multiple of the current one).

        Examples
        --------
        >>> s = BTYDSummary()
        >>> s.add(1, 5, 11); s.add(1, 4, 10)
        >>> s.coarsen(4); sorted(s.counts.items())
        [((1, 4, 10), 2)]
        """
        if resolution_days <= self.resolution_days:
            return
        old = self.counts
        self.resolution_days = int(resolution_days)
        self.counts = {}
        for (x, tx, first), n in old.items():
            key = self._key(x, tx, first)
            self.counts[key] = self.counts.get(key, 0) + n
        while len(self.counts) > self.max_rows:
            self.coarsen(self.resolution_days * 2)

    def merge(self, other: BTYDSummary) -> None:
        """Add every row of ``other`` (at the coarser of the two resolutions)."""
        if other.resolution_days > self.resolution_days:
            self.coarsen(other.resolution_days)
        for (x, tx, first), n in other.counts.items():
            self.add(x, tx, first, n)

    def table(
        self, day: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """``(x, t_x, T, count)`` arrays as of ``day`` (rows first bought after it are left out)."""
        rows = [
            (x, tx, day - first, n) for (x, tx, first), n in self.counts.items() if first <= day
        ]
        rows.sort()
        if not rows:
            empty = np.zeros(0)
            return empty, empty.copy(), empty.copy(), empty.copy()
        data = np.asarray(rows, dtype=float)
        tx = np.minimum(data[:, 1], data[:, 2])
        return data[:, 0], tx, data[:, 2], data[:, 3]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the resolution and the rows as ``[x, t_x, first_day, count]``."""
        return {
            "resolution_days": self.resolution_days,
            "max_rows": self.max_rows,
            "rows": [[x, tx, first, n] for (x, tx, first), n in sorted(self.counts.items())],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BTYDSummary:
        """Inverse of :meth:`to_dict`."""
        summary = cls(
            resolution_days=int(data.get("resolution_days", 1)),
            max_rows=int(data.get("max_rows", 20_000)),
        )
        for x, tx, first, n in data.get("rows", []):
            summary.counts[(int(x), int(tx), int(first))] = int(n)
        return summary

    @classmethod
    def combined(cls, parts: Iterable[BTYDSummary], max_rows: int = 20_000) -> BTYDSummary:
        """One table holding every row of ``parts`` (e.g. one per partition)."""
        total = cls(max_rows=max_rows)
        for part in parts:
            total.merge(part)
        return total
