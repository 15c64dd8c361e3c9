"""Pareto/NBD: agrees with lifetimes, recovers its parameters, sensible conditionals."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from models.pareto_nbd import (
    ParetoNBDParams,
    fit_pareto_nbd,
    pareto_expected_purchases,
    pareto_log_likelihood,
    pareto_prob_alive,
    pareto_prob_no_purchase,
    simulate_pareto_nbd,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from lifetimes import ParetoNBDFitter
    from lifetimes.datasets import load_cdnow_summary

CDNOW_WEEKS = ParetoNBDParams(r=0.553, alpha=10.578, s=0.606, beta=11.669)


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return load_cdnow_summary(index_col=[0])


def lifetimes_fitter(p: ParetoNBDParams) -> ParetoNBDFitter:
    fitter = ParetoNBDFitter()
    fitter.params_ = pd.Series({"r": p.r, "alpha": p.alpha, "s": p.s, "beta": p.beta})
    return fitter


@pytest.mark.parametrize("days", [False, True])
def test_fit_agrees_with_lifetimes_on_the_same_summary(cdnow: pd.DataFrame, days: bool) -> None:
    scale = 7.0 if days else 1.0  # the shipped summary is in weeks; ours are days
    x, tx, t = cdnow["frequency"], cdnow["recency"] * scale, cdnow["T"] * scale
    ours = fit_pareto_nbd(x, tx, t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ParetoNBDFitter().fit(x, tx, t).params_
    for name in ("r", "alpha", "s", "beta"):
        assert getattr(ours, name) == pytest.approx(theirs[name], rel=2e-3), name


def test_conditionals_agree_with_lifetimes(cdnow: pd.DataFrame) -> None:
    x, tx, t = (cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    fitter = lifetimes_fitter(CDNOW_WEEKS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alive = fitter.conditional_probability_alive(x, tx, t)
        expected = fitter.conditional_expected_number_of_purchases_up_to_time(39, x, tx, t)
        ll = ParetoNBDFitter._conditional_log_likelihood(
            (CDNOW_WEEKS.r, CDNOW_WEEKS.alpha, CDNOW_WEEKS.s, CDNOW_WEEKS.beta), x, tx, t
        )
    np.testing.assert_allclose(pareto_prob_alive(x, tx, t, CDNOW_WEEKS), alive, rtol=1e-9)
    np.testing.assert_allclose(
        pareto_expected_purchases(39, x, tx, t, CDNOW_WEEKS), expected, rtol=1e-9
    )
    assert pareto_log_likelihood(CDNOW_WEEKS, x, tx, t) == pytest.approx(float(np.sum(ll)))


def test_no_purchase_probability_matches_simulation() -> None:
    """P(no purchase in t | history) against customers simulated past T."""
    truth = ParetoNBDParams(r=1.2, alpha=30.0, s=0.8, beta=90.0)
    rng = np.random.default_rng(7)
    n, big_t, horizon = 60_000, 100.0, 60.0
    lam = rng.gamma(truth.r, 1 / truth.alpha, n)
    mu = rng.gamma(truth.s, 1 / truth.beta, n)
    death = rng.exponential(1.0, n) / mu
    count_before = rng.poisson(lam * np.minimum(death, big_t))
    # the customers whose history is "no repeat purchase, observed for T" (x = 0)
    quiet = count_before == 0
    alive_after = np.clip(death - big_t, 0, horizon)
    none_after = rng.poisson(lam * alive_after) == 0
    observed = float(none_after[quiet].mean())
    predicted = float(pareto_prob_no_purchase(horizon, [0], [0], [big_t], truth)[0])
    assert predicted == pytest.approx(observed, abs=0.01)


def test_conditionals_are_sensible() -> None:
    p = ParetoNBDParams(r=0.6, alpha=70.0, s=0.6, beta=80.0)
    # bought today: certainly alive; silent for long after many purchases: likely dead
    assert pareto_prob_alive([5], [100], [100], p)[0] == pytest.approx(1.0)
    assert pareto_prob_alive([5], [10], [400], p)[0] < 0.05
    no_buy = pareto_prob_no_purchase([10, 30, 90, 365], 3, 50, 120, p)
    assert np.all(np.diff(no_buy) < 0) and np.all((no_buy > 0) & (no_buy < 1))
    expected = pareto_expected_purchases(90, [0, 3, 10], [0, 100, 100], [120, 120, 120], p)
    assert np.all(np.diff(expected) > 0)


def test_fit_recovers_simulated_parameters() -> None:
    truth = ParetoNBDParams(r=0.8, alpha=40.0, s=0.7, beta=60.0)
    x, tx, t = simulate_pareto_nbd(8000, 365.0, truth, seed=11)
    fit = fit_pareto_nbd(x, tx, t)
    assert fit.r / fit.alpha == pytest.approx(truth.r / truth.alpha, rel=0.15)
    assert fit.r == pytest.approx(truth.r, rel=0.25)
    assert fit.n_customers == 8000 and fit.log_likelihood is not None


def test_weighted_fit_equals_the_expanded_rows() -> None:
    x, tx, t = simulate_pareto_nbd(1500, 200.0, ParetoNBDParams(1, 30, 1, 60), seed=2)
    rows = np.stack([x, np.floor(tx), t], axis=1)
    uniq, counts = np.unique(rows, axis=0, return_counts=True)
    a = fit_pareto_nbd(rows[:, 0], rows[:, 1], rows[:, 2])
    b = fit_pareto_nbd(uniq[:, 0], uniq[:, 1], uniq[:, 2], counts)
    assert len(uniq) < len(rows)
    for name in ("r", "alpha", "s", "beta"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-4)


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        fit_pareto_nbd([], [], [])
    with pytest.raises(ValueError):
        fit_pareto_nbd([1], [5], [3])  # recency > T
    with pytest.raises(ValueError):
        ParetoNBDParams(r=0.0, alpha=1, s=1, beta=1)
