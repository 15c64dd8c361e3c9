"""Tests for models.btyd: BG/NBD probability alive and the maximum-likelihood fit."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from models.btyd import (
    CDNOW_PARAMS_WEEKS,
    DEFAULT_PARAMS,
    BGNBDParams,
    bgnbd_log_likelihood,
    expected_purchases,
    fit_bgnbd,
    prob_alive,
    prob_alive_np,
    simulate_bgnbd,
)

C = CDNOW_PARAMS_WEEKS


def _p_alive_by_hand(x: float, t_x: float, T: float, p: BGNBDParams) -> float:
    """Fader, Hardie & Lee (2005) eq. (6), evaluated naively."""
    if x == 0:
        return 1.0
    return 1.0 / (1.0 + (p.a / (p.b + x - 1)) * ((p.alpha + T) / (p.alpha + t_x)) ** (p.r + x))


def test_paper_worked_example_expected_purchases() -> None:
    # FHL 2005, section 5: a CDNOW customer with x=2, t_x=30.43, T=38.86 weeks is
    # expected to make 1.226 repeat purchases in the next 39 weeks.
    assert expected_purchases(39, 2, 30.43, 38.86, C) == pytest.approx(1.226, abs=5e-4)


@pytest.mark.parametrize(
    ("x", "t_x", "T", "expected"),
    [
        (2, 30.43, 38.86, 0.72658),
        (1, 1.0, 38.86, 0.18763),
        (10, 38.0, 38.86, 0.92145),
        (10, 10.0, 78.0, 0.0),
    ],
)
def test_cdnow_hand_checked_values(x: float, t_x: float, T: float, expected: float) -> None:
    assert prob_alive(x, t_x, T, C) == pytest.approx(_p_alive_by_hand(x, t_x, T, C), rel=1e-12)
    assert prob_alive(x, t_x, T, C) == pytest.approx(expected, abs=5e-5)


def test_frequency_zero_is_alive() -> None:
    for T in (0, 1, 100, 10_000):
        assert prob_alive(0, 0, T) == 1.0
    assert prob_alive(None, None, None) == 1.0
    assert prob_alive_np([0, 0], [0, 0], [5, 500]).tolist() == [1.0, 1.0]


def test_decreasing_in_T_and_increasing_in_recency() -> None:
    for params in (DEFAULT_PARAMS, C):
        ts = [prob_alive(5, 50, T, params) for T in range(50, 400, 10)]
        assert all(a > b for a, b in itertools.pairwise(ts))
        rs = [prob_alive(5, t_x, 300, params) for t_x in range(0, 301, 10)]
        assert all(a < b for a, b in itertools.pairwise(rs))


def test_more_purchases_and_same_silence_means_lower_p_alive() -> None:
    # A frequent buyer silent for 100 days is more suspicious than an occasional one.
    assert prob_alive(20, 200, 300) < prob_alive(2, 200, 300)


def test_numerically_stable_for_extremes() -> None:
    assert prob_alive(10_000, 10, 1e7) == 0.0
    assert prob_alive(10_000, 1e7, 1e7) == pytest.approx(1.0, abs=1e-3)
    v = prob_alive_np([1e5, 1, 3], [1, 0, 5], [1e9, 1e-9, 5])
    assert np.all(np.isfinite(v)) and np.all((v >= 0) & (v <= 1))
    # recency beyond T (clock skew) is clipped rather than giving P > 1.
    assert prob_alive(3, 50, 40) == prob_alive(3, 40, 40)


def test_vectorised_matches_scalar() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 30, 500).astype(float)
    T = rng.uniform(0, 700, 500)
    t_x = T * rng.random(500)
    v = prob_alive_np(x, t_x, T, DEFAULT_PARAMS)
    s = [prob_alive(a, b, c, DEFAULT_PARAMS) for a, b, c in zip(x, t_x, T, strict=True)]
    assert np.allclose(v, s, rtol=1e-12, atol=1e-15)


def test_log_likelihood_matches_the_paper_formula() -> None:
    x = np.array([0.0, 2.0, 7.0])
    t_x = np.array([0.0, 30.43, 20.0])
    T = np.array([38.86, 38.86, 50.0])
    r, alpha, a, b = C.r, C.alpha, C.a, C.b
    total = 0.0
    for xi, ti, Ti in zip(x, t_x, T, strict=True):
        beta = math.gamma(a) * math.gamma(b) / math.gamma(a + b)
        a1 = math.gamma(r + xi) * alpha**r / math.gamma(r)
        b1 = math.gamma(a) * math.gamma(b + xi) / math.gamma(a + b + xi) / beta
        like = b1 * a1 / (alpha + Ti) ** (r + xi)
        if xi > 0:
            b2 = math.gamma(a + 1) * math.gamma(b + xi - 1) / math.gamma(a + b + xi) / beta
            like += b2 * a1 / (alpha + ti) ** (r + xi)
        total += math.log(like)
    assert bgnbd_log_likelihood(r, alpha, a, b, x, t_x, T) == pytest.approx(total, rel=1e-10)
    w = np.array([2.0, 1.0, 3.0])
    assert bgnbd_log_likelihood(r, alpha, a, b, x, t_x, T, w) == pytest.approx(
        sum(
            wi * bgnbd_log_likelihood(r, alpha, a, b, x[i : i + 1], t_x[i : i + 1], T[i : i + 1])
            for i, wi in enumerate(w)
        )
    )


def test_fit_recovers_parameters_from_simulated_data() -> None:
    true = BGNBDParams(r=0.8, alpha=20.0, a=0.9, b=3.0)
    T = np.random.default_rng(5).uniform(200, 730, 10_000)
    x, t_x, big_t = simulate_bgnbd(10_000, T, true, seed=6)
    fit = fit_bgnbd(x, t_x, big_t, version="test")
    assert fit.version == "test" and fit.n_customers == 10_000
    assert fit.r == pytest.approx(true.r, rel=0.15)
    assert fit.alpha == pytest.approx(true.alpha, rel=0.2)
    assert fit.a / (fit.a + fit.b) == pytest.approx(true.a / (true.a + true.b), rel=0.2)
    assert fit.log_likelihood is not None
    # The optimum beats the truth and the defaults on the data it was fitted on.
    ll_true = bgnbd_log_likelihood(true.r, true.alpha, true.a, true.b, x, t_x, big_t)
    assert fit.log_likelihood >= ll_true - 1e-6
    # And P(alive) under the fit ranks the simulated customers like the truth does.
    assert (
        np.corrcoef(prob_alive_np(x, t_x, big_t, fit), prob_alive_np(x, t_x, big_t, true))[0, 1]
        > 0.98
    )


def test_fit_on_whole_days_is_fast_and_stable() -> None:
    x, t_x, T = simulate_bgnbd(20_000, 365, DEFAULT_PARAMS, seed=8)
    x, t_x, T = np.floor(x), np.floor(t_x), np.floor(T)  # whole-day summaries
    fit = fit_bgnbd(x, t_x, T, penalizer=0.0)
    assert 0.1 < fit.r < 0.5
    penalised = fit_bgnbd(x, t_x, T, penalizer=0.01)
    assert penalised.r + penalised.alpha + penalised.a + penalised.b < (
        fit.r + fit.alpha + fit.a + fit.b
    )


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        fit_bgnbd([], [], [])
    with pytest.raises(ValueError):
        fit_bgnbd([1], [5], [3])  # recency > T
    with pytest.raises(ValueError):
        fit_bgnbd([-1], [0], [3])
    with pytest.raises(ValueError):
        fit_bgnbd([1, 2], [0], [3])
    with pytest.raises(ValueError):
        fit_bgnbd([1], [0], [3], penalizer=-1)


def test_params_validation_and_round_trip() -> None:
    with pytest.raises(ValueError):
        BGNBDParams(r=0, alpha=1, a=1, b=1)
    with pytest.raises(ValueError):
        BGNBDParams(r=1, alpha=float("nan"), a=1, b=1)
    fit = BGNBDParams(1, 2, 3, 4, n_customers=9, log_likelihood=-1.5, version="v9")
    assert BGNBDParams.from_dict(fit.to_dict()) == fit
    assert DEFAULT_PARAMS.alpha == pytest.approx(7 * C.alpha)


def test_simulation_matches_model_moments() -> None:
    # Without death the expected repeat purchases by T is r/alpha*T; with
    # death it is lower. The simulated mean must lie below the no-death bound.
    x, _, _ = simulate_bgnbd(20_000, 100.0, DEFAULT_PARAMS, seed=2)
    assert x.mean() < DEFAULT_PARAMS.r / DEFAULT_PARAMS.alpha * 100
    assert x.mean() > 0.3 * DEFAULT_PARAMS.r / DEFAULT_PARAMS.alpha * 100


@pytest.mark.parametrize("scale", [1.0, 7.0])
def test_fit_agrees_with_lifetimes_on_the_same_summary(scale: float) -> None:
    """Our BG/NBD MLE equals lifetimes' BetaGeoFitter on CDNOW (weeks, and days)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lifetimes import BetaGeoFitter
        from lifetimes.datasets import load_cdnow_summary

        d = load_cdnow_summary(index_col=[0])
        x, tx, t = d["frequency"], d["recency"] * scale, d["T"] * scale
        theirs = BetaGeoFitter().fit(x, tx, t).params_
    ours = fit_bgnbd(x, tx, t)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(ours, name) == pytest.approx(theirs[name], rel=2e-3), name


def test_prob_no_purchase_is_the_likelihood_ratio() -> None:
    from models.btyd import bgnbd_prob_no_purchase

    p = CDNOW_PARAMS_WEEKS
    x, tx, t = np.array([0.0, 2.0, 7.0]), np.array([0.0, 30.43, 20.0]), np.array([38.86] * 3)
    ratio = [
        math.exp(
            bgnbd_log_likelihood(
                p.r, p.alpha, p.a, p.b, x[i : i + 1], tx[i : i + 1], t[i : i + 1] + 39
            )
            - bgnbd_log_likelihood(
                p.r, p.alpha, p.a, p.b, x[i : i + 1], tx[i : i + 1], t[i : i + 1]
            )
        )
        for i in range(3)
    ]
    np.testing.assert_allclose(bgnbd_prob_no_purchase(39, x, tx, t, p), ratio, rtol=1e-10)


def test_vectorised_expected_purchases_matches_scalar() -> None:
    from models.btyd import bgnbd_expected_purchases_np

    x, tx, t = [0, 2, 9], [0, 30.43, 35.0], [38.86, 38.86, 38.86]
    scalar = [
        expected_purchases(39, a, b, c, CDNOW_PARAMS_WEEKS)
        for a, b, c in zip(x, tx, t, strict=False)
    ]
    np.testing.assert_allclose(
        bgnbd_expected_purchases_np(39, x, tx, t, CDNOW_PARAMS_WEEKS), scalar, rtol=1e-12
    )
