"""The base's BTYD table: exact counts, bounded size, fits equal to raw-row fits."""

from __future__ import annotations

import numpy as np
import pytest

from models.btyd import fit_bgnbd, simulate_bgnbd
from models.btyd_summary import BTYDSummary
from models.churn_model import fit_btyd


def simulated_summary(n: int, seed: int = 5) -> tuple[BTYDSummary, np.ndarray]:
    """A base acquired over a year (first days 0..364), observed at day 365."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 365, n)
    x, tx, _ = simulate_bgnbd(n, 365 - first, seed=seed)
    summary = BTYDSummary()
    rows = []
    for xi, txi, fi in zip(x, np.floor(tx), first, strict=True):
        summary.add(int(xi), int(txi), int(fi))
        rows.append((xi, txi, 365 - fi))
    return summary, np.asarray(rows, dtype=float)


def test_table_holds_every_customer_in_far_fewer_rows() -> None:
    summary, _rows = simulated_summary(20_000)
    _x, tx, t, w = summary.table(365)
    assert summary.n_customers == 20_000 == int(w.sum())
    assert len(summary) < 20_000 / 2  # one-time buyers share rows
    assert np.all(tx <= t)


def test_fit_on_the_table_equals_the_fit_on_raw_rows() -> None:
    summary, rows = simulated_summary(6000)
    raw = fit_bgnbd(rows[:, 0], rows[:, 1], rows[:, 2])
    x, tx, t, w = summary.table(365)
    table = fit_bgnbd(x, tx, t, w)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(table, name) == pytest.approx(getattr(raw, name), rel=1e-5)


def test_removal_and_erasure_leave_no_trace() -> None:
    summary = BTYDSummary()
    summary.add(3, 40, 100)
    summary.add(0, 0, 120)
    summary.add(3, 40, 100, n=-1)
    assert summary.counts == {(0, 0, 120): 1}


def test_size_is_bounded_by_coarsening() -> None:
    summary, _ = simulated_summary(20_000)
    exact_rows = len(summary)
    small = BTYDSummary(max_rows=exact_rows // 4)
    small.merge(summary)
    assert len(small) <= exact_rows // 4
    assert small.resolution_days > 1
    assert small.n_customers == 20_000
    _x, tx, t, _ = small.table(365)
    assert np.all(tx <= t)
    # the coarse table still fits nearly the same model
    exact, coarse = fit_btyd(summary, 365), fit_btyd(small, 365)
    assert exact is not None and coarse is not None
    assert coarse.bgnbd.r / coarse.bgnbd.alpha == pytest.approx(
        exact.bgnbd.r / exact.bgnbd.alpha, rel=0.1
    )


def test_json_round_trip_and_partition_sum() -> None:
    a, b = BTYDSummary(), BTYDSummary()
    a.add(1, 5, 10)
    b.add(1, 5, 10)
    b.add(2, 9, 3)
    total = BTYDSummary.combined([BTYDSummary.from_dict(a.to_dict()), b])
    assert total.counts == {(1, 5, 10): 2, (2, 9, 3): 1}
    _x, _tx, t, w = total.table(20)
    assert t.tolist() == [10.0, 17.0] and w.tolist() == [2.0, 1.0]
    assert total.table(5)[3].tolist() == [1.0]  # first bought after day 5: left out


def test_too_few_customers_give_no_fit() -> None:
    summary = BTYDSummary()
    summary.add(0, 0, 10)
    assert fit_btyd(summary, 30) is None
