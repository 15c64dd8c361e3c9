"""Gamma-Gamma spend model and the CLV against lifetimes, on real data (CDNOW).

``lifetimes`` (a dev dependency) ships the CDNOW transaction log: 23,570
customers' CD purchases 1997-1998, data we did not generate. Our maximum
likelihood fits must agree with lifetimes' fitters on the same summaries, the
fit on the compressed spend table (what the churn learner sees) must equal
the fit on the raw rows, and the CLV built from them must predict a later
period's revenue better than the simple baseline (each customer's past
revenue rate) in the same run.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.btyd import fit_bgnbd
from models.btyd_summary import BTYDSummary
from models.churn_model import BTYDFit, fit_btyd
from models.clv import customer_value, expected_purchases
from models.gamma_gamma import (
    GammaGammaParams,
    expected_spend,
    fit_from_summary,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    simulate_gamma_gamma,
)
from models.spend_summary import SpendSummary

lifetimes = pytest.importorskip("lifetimes")


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """Calibration (to 1997-09-30) and holdout (to 1998-06-30) summaries, in days."""
    from lifetimes.datasets import load_dataset
    from lifetimes.utils import calibration_and_holdout_data

    tx = load_dataset("CDNOW_master.txt", header=0, sep=r"\s+", dtype={"customer_id": str})
    tx.columns = ["customer_id", "date", "quantity", "amount"]
    tx["date"] = pd.to_datetime(tx["date"].astype(str), format="%Y%m%d")
    tx = tx[tx["amount"] > 0]
    return calibration_and_holdout_data(
        tx,
        "customer_id",
        "date",
        calibration_period_end="1997-09-30",
        observation_period_end="1998-06-30",
        monetary_value_col="amount",
        freq="D",
    )


def test_published_cdnow_estimates_are_reproduced() -> None:
    """Fader & Hardie's note: p = 6.25, q = 3.74, gamma = 15.44 on CDNOW's summary."""
    from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

    data = load_cdnow_summary_data_with_monetary_value()
    repeat = data[data["frequency"] > 0]
    fit = fit_gamma_gamma(repeat["frequency"], repeat["monetary_value"])
    assert fit.p == pytest.approx(6.25, abs=0.01)
    assert fit.q == pytest.approx(3.74, abs=0.01)
    assert fit.v == pytest.approx(15.44, abs=0.01)


def test_fit_agrees_with_lifetimes_on_the_same_data(cdnow: pd.DataFrame) -> None:
    repeat = cdnow[(cdnow["frequency_cal"] > 0) & (cdnow["monetary_value_cal"] > 0)]
    theirs = lifetimes.GammaGammaFitter(penalizer_coef=0.0)
    theirs.fit(repeat["frequency_cal"], repeat["monetary_value_cal"])
    ours = fit_gamma_gamma(repeat["frequency_cal"], repeat["monetary_value_cal"])
    assert ours.n_customers == len(repeat) > 9000
    for name in ("p", "q", "v"):
        assert getattr(ours, name) == pytest.approx(theirs.params_[name], rel=1e-3), name
    # Same likelihood: ours is at least as good an optimum.
    x, m = repeat["frequency_cal"].to_numpy(), repeat["monetary_value_cal"].to_numpy()
    p, q, v = (theirs.params_[k] for k in ("p", "q", "v"))
    assert ours.log_likelihood >= gamma_gamma_log_likelihood(p, q, v, x, m) - 1e-6
    # And the same conditional expected spend per customer.
    expected = theirs.conditional_expected_average_profit(
        repeat["frequency_cal"], repeat["monetary_value_cal"]
    )
    mine = [expected_spend(f, mv, ours) for f, mv in zip(x, m, strict=True)]
    assert np.allclose(mine, expected.to_numpy(), rtol=1e-3)


def test_clv_agrees_with_lifetimes_and_beats_the_baseline(cdnow: pd.DataFrame) -> None:
    """Predict each customer's revenue in the 273-day holdout from the calibration period.

    Ours (BG/NBD x Gamma-Gamma), lifetimes' batch fitters on the same data, and
    two baselines: each customer's past repeat revenue rate, and the model with
    the customer's own mean spend instead of the Gamma-Gamma expectation.
    """
    data = cdnow
    horizon = float(data["duration_holdout"].iloc[0])
    f, r, t = (data[c].to_numpy() for c in ("frequency_cal", "recency_cal", "T_cal"))
    m = data["monetary_value_cal"].to_numpy()
    actual = (data["frequency_holdout"] * data["monetary_value_holdout"]).to_numpy()
    repeat = (f > 0) & (m > 0)
    purchases = BTYDFit(bgnbd=fit_bgnbd(f, r, t), day=0)  # BG/NBD alone
    spend = fit_gamma_gamma(f[repeat], m[repeat])
    ours = np.array(
        [
            customer_value(*row, purchases, spend, horizon_days=horizon)
            for row in zip(f, r, t, m, strict=True)
        ]
    )
    # lifetimes, batch
    bgf = lifetimes.BetaGeoFitter(penalizer_coef=0.0).fit(f, r, t)
    ggf = lifetimes.GammaGammaFitter(penalizer_coef=0.0).fit(f[repeat], m[repeat])
    theirs = bgf.conditional_expected_number_of_purchases_up_to_time(
        horizon, f, r, t
    ) * ggf.conditional_expected_average_profit(pd.Series(f), pd.Series(m))
    assert np.allclose(ours, np.asarray(theirs), rtol=2e-3)
    # baselines
    past_rate = f * m / np.maximum(t, 1.0) * horizon
    own_mean = np.array(
        [
            expected_purchases(horizon, fi, ri, ti, purchases) * (mi if fi > 0 else ours_spend)
            for fi, ri, ti, mi, ours_spend in zip(
                f, r, t, m, [expected_spend(0, 0, spend)] * len(f), strict=True
            )
        ]
    )

    def mae(prediction: np.ndarray) -> float:
        return float(np.mean(np.abs(prediction - actual)))

    assert mae(ours) < 0.85 * mae(past_rate)  # 31.9 vs 42.1 dollars per customer
    assert mae(ours) <= mae(own_mean)
    assert np.corrcoef(ours, actual)[0, 1] > np.corrcoef(past_rate, actual)[0, 1]
    # The total is within 20 % of what the 23,500 customers spent (-14 %).
    assert abs(ours.sum() / actual.sum() - 1) < 0.2


def test_parameters_are_recovered_from_simulated_spend() -> None:
    truth = GammaGammaParams(p=4.0, q=5.0, v=60.0)
    x, m = simulate_gamma_gamma(20_000, truth, seed=11)
    fit = fit_gamma_gamma(x, m)
    assert fit.population_mean == pytest.approx(truth.population_mean, rel=0.05)
    assert fit.p == pytest.approx(truth.p, rel=0.1)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="repeat customers"):
        fit_gamma_gamma([0, 2], [10.0, 5.0])
    with pytest.raises(ValueError, match="zero customers"):
        fit_gamma_gamma([], [])
    with pytest.raises(ValueError, match="same length"):
        fit_gamma_gamma([1, 2], [5.0])
    with pytest.raises(ValueError, match="finite"):
        GammaGammaParams(p=math.nan, q=2.0, v=1.0)


def test_clv_of_the_churn_learners_fit_agrees_with_lifetimes(cdnow: pd.DataFrame) -> None:
    """The CLV as the worker computes it: the churn learner's BTYD fit (BG/NBD and
    Pareto/NBD on the base's summary table, their mean) x the Gamma-Gamma fit on
    the spend table. Equal to lifetimes' conditional expectations with the same
    parameters, and a better predictor than BG/NBD alone and than the baseline."""
    data = cdnow
    horizon = float(data["duration_holdout"].iloc[0])
    f, r, t = (data[c].to_numpy() for c in ("frequency_cal", "recency_cal", "T_cal"))
    m = data["monetary_value_cal"].to_numpy()
    actual = (data["frequency_holdout"] * data["monetary_value_holdout"]).to_numpy()
    cut = int(t.max())
    table, spend_table = BTYDSummary(), SpendSummary()
    for fi, ri, ti, mi in zip(f, r, t, m, strict=True):
        table.add(int(fi), int(ri), cut - int(ti))
        spend_table.add(int(fi), float(mi))
    purchases = fit_btyd(table, cut)
    spend = fit_from_summary(spend_table)
    assert purchases is not None and purchases.pareto is not None and spend is not None
    ours = np.array(
        [
            customer_value(*row, purchases, spend, horizon_days=horizon)
            for row in zip(f, r, t, m, strict=True)
        ]
    )
    bg, pn = purchases.bgnbd, purchases.pareto
    bgf = lifetimes.BetaGeoFitter()
    bgf.params_ = pd.Series({"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b})
    pnf = lifetimes.ParetoNBDFitter()
    pnf.params_ = pd.Series({"r": pn.r, "alpha": pn.alpha, "s": pn.s, "beta": pn.beta})
    ggf = lifetimes.GammaGammaFitter()
    ggf.params_ = pd.Series({"p": spend.p, "q": spend.q, "v": spend.v})
    both = (
        np.asarray(bgf.conditional_expected_number_of_purchases_up_to_time(horizon, f, r, t))
        + np.asarray(pnf.conditional_expected_number_of_purchases_up_to_time(horizon, f, r, t))
    ) / 2
    theirs = both * ggf.conditional_expected_average_profit(pd.Series(f), pd.Series(m)).to_numpy()
    assert np.allclose(ours, theirs, rtol=1e-6)

    def mae(prediction: np.ndarray) -> float:
        return float(np.mean(np.abs(prediction - actual)))

    bgnbd_only = BTYDFit(bgnbd=bg, day=cut)
    rows = zip(f, r, t, m, strict=True)
    alone = np.array([customer_value(*x, bgnbd_only, spend, horizon_days=horizon) for x in rows])
    past_rate = f * m / np.maximum(t, 1.0) * horizon
    assert mae(ours) < 0.85 * mae(past_rate)  # 31.5 vs 42.1 dollars per customer
    assert mae(ours) <= mae(alone)  # 31.5 vs 31.9 with BG/NBD alone


def test_fit_on_the_spend_table_equals_the_fit_on_raw_rows(cdnow: pd.DataFrame) -> None:
    """The table keeps 1 % spend buckets: the fit moves by far less than its error."""
    repeat = cdnow[(cdnow["frequency_cal"] > 0) & (cdnow["monetary_value_cal"] > 0)]
    x, m = repeat["frequency_cal"].to_numpy(), repeat["monetary_value_cal"].to_numpy()
    raw = fit_gamma_gamma(x, m)
    table = SpendSummary()
    for xi, mi in zip(x, m, strict=True):
        table.add(int(xi), float(mi))
    assert table.n_customers == len(repeat) and len(table) < len(repeat)
    fitted = fit_from_summary(table)
    assert fitted is not None and fitted.n_customers == raw.n_customers
    for name in ("p", "q", "v"):
        assert getattr(fitted, name) == pytest.approx(getattr(raw, name), rel=1e-3), name
    assert fitted.population_mean == pytest.approx(raw.population_mean, rel=1e-4)
    # lifetimes' GammaGammaFitter on the same table (its rows weighted by their
    # customers) finds the same parameters: the fit the learner publishes.
    tx, tm, tw = table.table()
    theirs = lifetimes.GammaGammaFitter(penalizer_coef=0.0).fit(tx, tm, weights=tw)
    for name in ("p", "q", "v"):
        assert getattr(fitted, name) == pytest.approx(theirs.params_[name], rel=1e-3), name
    # Too few repeat customers: no fit, rather than a fit that says nothing.
    few = SpendSummary()
    for xi, mi in zip(x[:49], m[:49], strict=True):
        few.add(int(xi), float(mi))
    assert fit_from_summary(few) is None
