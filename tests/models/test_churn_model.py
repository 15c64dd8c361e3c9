"""The churn model: prior = today's score, plain-JSON state, online learning, reasons."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from models.btyd import DEFAULT_PARAMS
from models.churn import ChurnScorer, roc_auc
from models.churn_model import (
    FEATURES,
    PRIOR_WEIGHTS,
    BTYDFit,
    ChurnModel,
    OnlineChurnLearner,
)
from models.churn_outcomes import ChurnTracking
from models.pareto_nbd import ParetoNBDParams

FEATURE_DICTS = [
    {"frequency": 4, "recency": 100, "T": 250, "orders": 5, "days_since_last_event": 150},
    {"frequency": 20, "recency": 200, "T": 203, "orders": 21, "days_since_last_event": 1,
     "active_days_30d": 12, "events_30d": 40, "events_90d": 110, "tickets_90d": 0},
    {"days_since_last_event": 30, "events_30d": 0, "events_90d": 12, "tickets_30d": 3,
     "tickets_90d": 4, "nps_last": 2, "nps_trend": -6},
    {},
]  # fmt: skip


@pytest.mark.parametrize("features", FEATURE_DICTS)
def test_the_prior_is_todays_hand_set_score(features: dict[str, object]) -> None:
    """Until outcomes mature, the score is exactly the hand-set ChurnScorer's."""
    old = ChurnScorer().score(features, DEFAULT_PARAMS)
    new = ChurnModel().score(features)
    assert new.score == pytest.approx(old.score, abs=1e-12)
    assert new.reasons == old.reasons


def test_model_state_is_plain_json() -> None:
    fit = BTYDFit(pareto=ParetoNBDParams(0.5, 70.0, 0.6, 80.0), day=20_100, n_customers=9)
    model = ChurnModel(weights={"few_repeat_purchases": 1.5}, btyd=fit, revision=3, learned=True)
    text = json.dumps(model.to_dict())  # numbers, strings, lists and dicts only
    again = ChurnModel.from_dict(json.loads(text))
    assert again.to_dict() == model.to_dict()
    for features in FEATURE_DICTS:
        assert again.score(features).score == model.score(features).score
    assert model.version_label == "churn-r3+btyd-d20100"
    learner = OnlineChurnLearner(min_labels=1)
    learner.learn_one([0.5] * len(FEATURES), True)
    restored = OnlineChurnLearner.from_dict(json.loads(json.dumps(learner.to_dict())))
    assert restored.weights == learner.weights and restored.bias == learner.bias
    with pytest.raises(ValueError):
        ChurnModel.from_dict({**model.to_dict(), "format": 99})


def test_btyd_features_follow_the_fit() -> None:
    fit = BTYDFit(pareto=ParetoNBDParams(0.5, 70.0, 0.6, 80.0), day=1)
    model = ChurnModel(btyd=fit, horizon_days=90)
    busy = model.evaluate({"frequency": 12, "recency": 200, "T": 205, "orders": 13})[0]
    gone = model.evaluate({"frequency": 12, "recency": 20, "T": 205, "orders": 13})[0]
    once = model.evaluate({"frequency": 0, "recency": 0, "T": 205, "orders": 1})[0]
    never = model.evaluate({"days_since_last_event": 3})[0]
    assert busy["low_expected_purchases"] < gone["low_expected_purchases"]
    assert busy["not_alive"] < gone["not_alive"]
    assert once["few_repeat_purchases"] == 1.0 and busy["few_repeat_purchases"] == 1 / 13
    assert never["never_bought"] == 1.0 and never["low_expected_purchases"] == 0.0
    for values in (busy, gone, once, never):
        assert set(values) == set(FEATURES)
        assert all(0.0 <= v <= 1.0 for v in values.values())


def synthetic_outcomes(n: int, seed: int) -> list[tuple[list[float], bool]]:
    """Outcomes driven by few_repeat_purchases and low_expected_purchases (weight 0 in the
    prior), and not by support (weight 2 in the prior)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        v = [rng.random() * 0.5, rng.random(), 0.0, rng.random(), 0.0, rng.random(), 0.0, 0.0]
        v[6] = 1.0 if rng.random() < 0.5 else rng.random() * 0.3
        z = -2.0 + 2.5 * v[6] + 2.0 * v[5] + 0.5 * v[1]
        out.append((v, rng.random() < 1 / (1 + math.exp(-z))))
    return out


def test_learner_moves_from_the_prior_to_the_outcomes_and_validates_progressively() -> None:
    learner = OnlineChurnLearner(min_labels=1000, learning_rate=0.05)
    data = synthetic_outcomes(30_000, seed=1)
    assert not learner.ready
    predictions = [learner.learn_one(v, y) for v, y in data]
    assert learner.ready and learner.n_labels == 30_000
    w = learner.weights
    assert w["few_repeat_purchases"] > 1.5 and w["low_expected_purchases"] > 1.0
    assert w["support"] < PRIOR_WEIGHTS["support"] / 2  # no signal: forgotten
    # progressive validation = the predictions made before learning each outcome
    tail = data[-learner.window :]
    expected_auc = roc_auc(predictions[-learner.window :], [y for _, y in tail])
    v = learner.validation()
    assert v["auc"] == pytest.approx(expected_auc, abs=1e-4)
    p = np.asarray(predictions[-learner.window :])
    y = np.asarray([y for _, y in tail], dtype=float)
    assert v["brier"] == pytest.approx(float(np.mean((p - y) ** 2)), abs=1e-4)
    # calibrated on fresh data: mean score close to the churn rate, Brier below the prior's
    fresh = synthetic_outcomes(5000, seed=2)
    learned = ChurnModel(weights=w, bias=learner.bias)
    prior = ChurnModel()
    scores = np.asarray([learned.probability(v) for v, _ in fresh])
    outcome = np.asarray([y for _, y in fresh], dtype=float)
    assert abs(scores.mean() - outcome.mean()) < 0.03
    prior_scores = np.asarray([prior.probability(v) for v, _ in fresh])
    assert np.mean((scores - outcome) ** 2) < np.mean((prior_scores - outcome) ** 2) - 0.02


def test_reasons_are_the_learned_models_top_contributions_in_words() -> None:
    model = ChurnModel(
        weights={"few_repeat_purchases": 3.0, "low_expected_purchases": 2.0, "inactivity": 0.1},
        bias=-2.0,
    )
    result = model.score({"frequency": 0, "recency": 0, "T": 300, "orders": 1,
                          "days_since_last_event": 300})  # fmt: skip
    names = [name for name, _ in result.factors]
    assert names[:2] == ["few_repeat_purchases", "low_expected_purchases"]
    assert result.reasons[0] == "bought on one day only"
    assert result.reasons[1].startswith(("not expected to buy", "expected to buy only"))
    assert "no activity" not in " ".join(result.reasons)  # its weight is tiny now
    assert model.score({"frequency": 0}, explain=False).reasons == []


def test_snapshots_are_bounded_and_labels_honest() -> None:
    t = ChurnTracking(horizon_days=90, label="purchase")
    churn: dict[str, object] = {}
    released = []
    for day in range(0, 400):
        out, _ = t.start_of_day(churn, "c42", day, [0.1] * len(FEATURES))
        released += out
        assert t.pending(churn) <= 90 // t.every + 1
        if day == 200:
            t.observe(churn, "browsing", day * 86_400_000 + 5)  # not a purchase
        if day == 250:
            t.observe(churn, "purchases", day * 86_400_000 + 5)
    by_day = {d: churned for _, churned, d in released}
    # a snapshot on day d waits for a purchase in [d, d + 90)
    for d, churned in by_day.items():
        assert churned == (0 if d <= 250 < d + 90 else 1), d
    assert min(by_day) < 250 - 90 < max(by_day)  # both outcomes occurred
    activity = ChurnTracking(horizon_days=90, label="activity", snapshot_every=1)
    churn = {}
    activity.start_of_day(churn, "c1", 10, [0.0])
    activity.observe(churn, "browsing", 50 * 86_400_000)
    assert activity.start_of_day(churn, "c1", 100, [0.0])[0][0][1] == 0  # browsing counts
