"""The whole base's spend sufficient statistics for the Gamma-Gamma model, compressed.

The Gamma-Gamma spend model (:mod:`models.gamma_gamma`) sees a repeat customer
only through ``(x, m)``: repeat purchase days and the mean daily spend over
them (``monetary_value``). ``m`` is a continuous amount, so the table keeps,
per ``x`` and per *spend bucket* (``floor(ln m / resolution)``: a bucket
spans ``resolution`` in log spend, 1 % of the amount by default), the number
of customers and the sum of their ``m``; a fit sees each row as that many
customers at the row's mean spend. Within a 1 % bucket the Gamma-Gamma
log-likelihood moves by far less than its sampling noise, and the row's mean
keeps the population's mean spend exact.

When the table would exceed ``max_rows``, the buckets double in width
(two neighbouring buckets merge, counts and sums add up): the table stays
bounded however large the base grows, at the price of a coarser spend
resolution. ``x`` is kept exact (it is a small integer for nearly everyone),
so the bound holds while the base has fewer distinct repeat frequencies than
``max_rows / 2`` -- years of daily purchases.

Like :class:`models.btyd_summary.BTYDSummary`, every sweep over a partition
rebuilds that partition's table from the customers it holds
(``streams.worker.sweep``): an erased customer leaves it at the next pass.

Examples
--------
>>> s = SpendSummary()
>>> for x, m in [(1, 20.0), (1, 20.04), (3, 55.0)]:
...     s.add(x, m)
>>> len(s), s.n_customers
(2, 3)
>>> x, m, w = s.table()
>>> x.tolist(), [round(v, 2) for v in m.tolist()], w.tolist()
([1.0, 3.0], [20.02, 55.0], [2.0, 1.0])
>>> SpendSummary.from_dict(s.to_dict()).table()[2].tolist()
[2.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["SpendSummary"]

#: Widest bucket (in log spend) the table coarsens to: beyond, one bucket per
#: factor e^8 (~3000) of spend would say nothing about the spread.
MAX_RESOLUTION = 8.0


class SpendSummary:
    """Repeat customers counted by ``(frequency, spend bucket)``, with their spend summed.

    Parameters
    ----------
    resolution
        Width of a spend bucket in log spend (0.01: buckets of about 1 %).
    max_rows
        Most distinct rows kept; beyond, the buckets double in width.
    """

    def __init__(self, resolution: float = 0.01, max_rows: int = 5_000) -> None:
        if not (resolution > 0 and math.isfinite(resolution)) or max_rows < 1:
            raise ValueError("resolution must be > 0 and max_rows >= 1")
        self.resolution = float(resolution)
        self.max_rows = int(max_rows)
        self.rows: dict[tuple[int, int], list[float]] = {}  # (x, bucket) -> [n, sum of m]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (
            f"SpendSummary(resolution={self.resolution}, max_rows={self.max_rows}, "
            f"rows={len(self)}, customers={self.n_customers})"
        )

    @property
    def n_customers(self) -> int:
        """Repeat customers counted in the table."""
        return int(sum(n for n, _ in self.rows.values()))

    def add(self, frequency: int, monetary_value: float, n: int = 1) -> None:
        """Count ``n`` repeat customers with ``x = frequency`` and mean spend ``m``.

        Customers without repeat purchases or spend (``x <= 0`` or ``m <= 0``, or
        a value that is not finite) are not part of the Gamma-Gamma fit and are
        left out.

        Examples
        --------
        >>> s = SpendSummary()
        >>> s.add(0, 30.0); s.add(2, 0.0); s.add(2, float("nan")); len(s)
        0
        """
        x = int(frequency)
        m = float(monetary_value)
        if x <= 0 or not (m > 0 and math.isfinite(m)):
            return
        key = (x, math.floor(math.log(m) / self.resolution))
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = [float(n), n * m]
        else:
            row[0] += n
            row[1] += n * m
        if len(self.rows) > self.max_rows:
            self.coarsen()

    def coarsen(self) -> None:
        """Double the bucket width (merging neighbouring buckets) until the table fits.

        ``floor(floor(l / w) / 2) == floor(l / 2w)``, so rows merge from their
        keys alone.

        Examples
        --------
        >>> s = SpendSummary(resolution=0.5)
        >>> s.add(1, 1.2); s.add(1, 2.0)  # log spend 0.18 and 0.69: two buckets
        >>> s.max_rows = 1; s.coarsen(); s.resolution, len(s)
        (1.0, 1)
        """
        while len(self.rows) > self.max_rows and self.resolution < MAX_RESOLUTION:
            self._merge_buckets()

    def _merge_buckets(self) -> None:
        old = self.rows
        self.resolution *= 2.0
        self.rows = {}
        for (x, bucket), (n, total) in old.items():
            key = (x, bucket // 2)
            row = self.rows.get(key)
            if row is None:
                self.rows[key] = [n, total]
            else:
                row[0] += n
                row[1] += total

    def merge(self, other: SpendSummary) -> None:
        """Add every row of ``other`` (at the coarser of the two resolutions)."""
        rows = other.rows
        if other.resolution < self.resolution:
            copy = SpendSummary(other.resolution, max_rows=len(other.rows) + 1)
            copy.rows = {k: list(v) for k, v in other.rows.items()}
            while copy.resolution < self.resolution:
                copy._merge_buckets()
            rows = copy.rows
        else:
            while self.resolution < other.resolution:
                self._merge_buckets()
        for key, (n, total) in rows.items():
            row = self.rows.get(key)
            if row is None:
                self.rows[key] = [n, total]
            else:
                row[0] += n
                row[1] += total
        if len(self.rows) > self.max_rows:
            self.coarsen()

    def table(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """``(x, m, count)`` arrays: each row's frequency, mean spend and customers."""
        if not self.rows:
            empty = np.zeros(0)
            return empty, empty.copy(), empty.copy()
        data = np.asarray(
            sorted((x, total / n, n) for (x, _), (n, total) in self.rows.items() if n > 0),
            dtype=float,
        )
        return data[:, 0], data[:, 1], data[:, 2]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the resolution and the rows as ``[x, bucket, count, sum of m]``."""
        return {
            "resolution": self.resolution,
            "max_rows": self.max_rows,
            "rows": [
                [x, bucket, int(n), round(total, 6)]
                for (x, bucket), (n, total) in sorted(self.rows.items())
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpendSummary:
        """Inverse of :meth:`to_dict`."""
        summary = cls(
            resolution=float(data.get("resolution", 0.01)),
            max_rows=int(data.get("max_rows", 5_000)),
        )
        for x, bucket, n, total in data.get("rows", []):
            summary.rows[(int(x), int(bucket))] = [float(n), float(total)]
        return summary

    @classmethod
    def combined(cls, parts: Iterable[SpendSummary], max_rows: int = 20_000) -> SpendSummary:
        """One table holding every row of ``parts`` (e.g. one per partition)."""
        total = cls(max_rows=max_rows)
        for part in parts:
            total.merge(part)
        return total
