"""The base's spend table: exact counts and mean spend, bounded size, partitions add up."""

from __future__ import annotations

import numpy as np
import pytest

from models.gamma_gamma import GammaGammaParams, fit_from_summary, fit_gamma_gamma
from models.gamma_gamma import simulate_gamma_gamma as simulate
from models.spend_summary import SpendSummary

TRUTH = GammaGammaParams(p=4.0, q=5.0, v=60.0)


def table_of(x: np.ndarray, m: np.ndarray, **kwargs: float) -> SpendSummary:
    table = SpendSummary(**kwargs)  # type: ignore[arg-type]
    for xi, mi in zip(x, m, strict=True):
        table.add(int(xi), float(mi))
    return table


def test_table_keeps_every_customer_and_the_mean_spend() -> None:
    x, m = simulate(20_000, TRUTH, seed=3)
    table = table_of(x, m)
    tx, tm, w = table.table()
    assert table.n_customers == 20_000 == int(w.sum())
    assert np.dot(w, tm) == pytest.approx(m.sum(), rel=1e-12)  # row means keep the total
    assert np.dot(w, tx) == pytest.approx(x.sum())


def test_size_is_bounded_and_the_fit_survives_coarsening() -> None:
    x, m = simulate(20_000, TRUTH, seed=4)
    exact = fit_gamma_gamma(x, m)
    small = table_of(x, m, max_rows=500)
    assert len(small) <= 500 and small.resolution > 0.01
    assert small.n_customers == 20_000
    fitted = fit_from_summary(small)
    assert fitted is not None
    assert fitted.population_mean == pytest.approx(exact.population_mean, rel=0.01)


def test_partitions_sum_to_the_table_of_the_whole_base() -> None:
    """What the churn learner builds from the partitions' published tables."""
    x, m = simulate(3000, TRUTH, seed=5)
    whole = table_of(x, m)
    parts = [table_of(x[i::3], m[i::3]) for i in range(3)]
    parts[1].max_rows = 50  # one partition had to coarsen
    parts[1].coarsen()
    combined = SpendSummary.combined(SpendSummary.from_dict(p.to_dict()) for p in parts)
    assert combined.resolution == parts[1].resolution
    assert combined.n_customers == whole.n_customers
    _, cm, cw = combined.table()
    assert np.dot(cw, cm) == pytest.approx(m.sum(), rel=1e-9)
    coarse = table_of(x, m)
    while coarse.resolution < combined.resolution:
        coarse._merge_buckets()
    assert {k: v[0] for k, v in combined.rows.items()} == {k: v[0] for k, v in coarse.rows.items()}


def test_one_time_buyers_and_bad_values_are_not_counted() -> None:
    table = SpendSummary()
    for x, m in [(0, 40.0), (3, 0.0), (2, -5.0), (2, float("inf")), (2, float("nan"))]:
        table.add(x, m)
    assert len(table) == 0 and table.n_customers == 0
    with pytest.raises(ValueError):
        SpendSummary(resolution=0)
