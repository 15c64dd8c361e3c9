"""Acceptance on real purchases (CDNOW, as shipped by lifetimes) and on the simulator.

The streaming score is computed by the worker's churn code (the processor's
churn step, the churn learner stepped in stream time), fed the history in
event-time order; recency alone and BG/NBD / Pareto-NBD fitted in batch on the
calibration data are ranked on the same customers in the same run. The full
data set's figures are in README.md and docs/churn.md (``segmenter evaluate
--dataset cdnow ...``); here the 1/10 sample lifetimes ships (2,357 customers,
the same 18 months) keeps the run short.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from streams.evaluation import EvaluationReport, dataset_splits, evaluate_simulation
from streams.simulator import Simulation

# One replay of the sample to the last cut-off: ~70 s of CPU on this project's VM.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

SPLITS = [("1997-10-01", 273), ("1998-01-01", 90)]  # 39/39 weeks; 1 year / 90 days


@pytest.fixture(scope="module")
def cdnow_reports() -> list[EvaluationReport]:
    return dataset_splits(
        "cdnow-sample", SPLITS, model_horizon_days=90, active_days=0, follow_up=False
    )


BATCH = (
    "BG/NBD P(no purchase)",
    "BG/NBD expected purchases",
    "Pareto/NBD P(no purchase)",
    "Pareto/NBD expected purchases",
)


@pytest.mark.parametrize("split", range(len(SPLITS)))
def test_streaming_score_beats_batch_btyd_and_recency_on_real_purchases(
    cdnow_reports: list[EvaluationReport], split: int
) -> None:
    r = cdnow_reports[split]
    assert r.n_customers == 2357 and 0.5 < r.base_rate < 0.95
    best_batch = max(r.comparisons[name].auc for name in BATCH)
    assert r.score.auc >= best_batch, (r.score.auc, {n: r.comparisons[n].auc for n in BATCH})
    assert r.score.auc >= r.comparisons["recency only"].auc
    # learned from outcomes (not the prior) by the cut-off, validated progressively
    assert r.model["learned"] is True
    assert r.model["validation"]["labels"] > 10_000
    assert 0.5 < r.model["validation"]["auc"] < 1.0
    assert r.publications > 10


def test_the_learned_probability_is_calibrated_on_its_outcomes(
    cdnow_reports: list[EvaluationReport],
) -> None:
    """Progressive validation at the first cut-off: the mean predicted probability of
    no purchase in 90 days matches the observed rate of the outcomes it predicted."""
    v = cdnow_reports[0].model["validation"]
    assert v["window"] >= 10_000
    assert abs(v["mean_score"] - v["base_rate"]) < 0.02


def test_our_batch_fits_agree_with_lifetimes_in_the_same_run(
    cdnow_reports: list[EvaluationReport],
) -> None:
    for r in cdnow_reports:
        for model in ("BG/NBD", "Pareto/NBD"):
            ours = r.comparisons[f"{model} expected purchases"]
            theirs = r.comparisons[f"{model} expected purchases (lifetimes)"]
            assert ours.auc == pytest.approx(theirs.auc, abs=5e-4)
            assert ours.precision_at_decile == pytest.approx(theirs.precision_at_decile, abs=0.01)


def test_streaming_btyd_fit_matches_a_batch_fit_on_the_same_summary(
    cdnow_reports: list[EvaluationReport],
) -> None:
    """The learner's last refit (on the summary table) is a proper BG/NBD/Pareto fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lifetimes import BetaGeoFitter

    from streams.histories import dataset_events

    m = cdnow_reports[0].model
    fit_day = m["btyd_fit_day"]
    events, _ = dataset_events("cdnow-sample")
    days: dict[str, set[int]] = {}
    for _, e in events:
        d = e["ts"] // 86_400_000
        if d < fit_day:  # the refit at a midnight sees the days before it
            days.setdefault(e["customer_id"], set()).add(d)
    x = np.array([len(v) - 1 for v in days.values()], dtype=float)
    tx = np.array([max(v) - min(v) for v in days.values()], dtype=float)
    t = np.array([fit_day - min(v) for v in days.values()], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = BetaGeoFitter().fit(x, tx, t).params_
    for name in ("r", "alpha", "a", "b"):
        assert m["bgnbd"][name] == pytest.approx(params[name], rel=0.01), name


def test_learning_from_outcomes_is_not_worse_than_todays_weights_on_the_simulator() -> None:
    """Simulator: the learned score vs the hand-set prior (today's score), same data."""
    sim = Simulation(customers=500, days=120, seed=42)
    learned = evaluate_simulation(sim, horizon_days=30, batch_baselines=False)
    prior = evaluate_simulation(sim, horizon_days=30, learning=False, batch_baselines=False)
    assert learned.model["learned"] is True and prior.model["learned"] is False
    assert learned.score.auc >= prior.score.auc - 0.005
    assert learned.score.auc > learned.baseline.auc
    assert learned.score.brier is not None and prior.score.brier is not None
    assert learned.score.brier <= prior.score.brier + 0.001
