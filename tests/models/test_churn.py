"""Tests for models.churn: scorer, levels with hysteresis, evaluation."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import precision_score, roc_auc_score

from models.btyd import DEFAULT_PARAMS, BGNBDParams
from models.churn import (
    DEFAULT_BIAS,
    DEFAULT_THRESHOLDS,
    DEFAULT_WEIGHTS,
    FACTORS,
    ChurnScore,
    ChurnScorer,
    LevelThresholds,
    churn_level,
    precision_at_top,
    recency_baseline_score,
    roc_auc,
)
from models.eventtime import MS_PER_DAY

LOYAL: dict[str, Any] = {
    "frequency": 20,
    "recency": 200,
    "T": 203,
    "orders": 21,
    "days_since_last_purchase": 3,
    "days_since_last_event": 1,
    "active_days_30d": 12,
    "events_30d": 40,
    "events_90d": 110,
    "sessions_30d": 12,
    "tickets_90d": 0,
    "escalations_90d": 0,
    "open_tickets": 0,
    "reopened": 0,
    "nps_last": 9,
    "nps_category": "promoter",
    "nps_trend": 1.0,
    "csat_avg": 4.6,
    "review_avg": 4.5,
}


# --------------------------------------------------------------------- scorer
def test_constructor_arguments_stored_under_their_names() -> None:
    s = ChurnScorer(
        weights={"support": 1.0},
        bias=-2.5,
        default_gap_days=10.0,
        min_gap_days=2.0,
        max_gap_days=40.0,
        max_reasons=2,
        min_reason_contribution=0.5,
    )
    assert s.weights == {**DEFAULT_WEIGHTS, "support": 1.0}
    assert (s.bias, s.default_gap_days, s.min_gap_days, s.max_gap_days) == (-2.5, 10.0, 2.0, 40.0)
    assert (s.max_reasons, s.min_reason_contribution) == (2, 0.5)
    assert "ChurnScorer(" in repr(s)
    with pytest.raises(ValueError):
        ChurnScorer(weights={"astrology": 1.0})
    with pytest.raises(ValueError):
        ChurnScorer(min_gap_days=20.0, default_gap_days=14.0)


def test_score_is_logistic_of_bias_plus_contributions() -> None:
    f = dict(LOYAL, days_since_last_event=30, tickets_90d=2, escalations_90d=1, nps_last=4)
    r = ChurnScorer().score(f, None)
    assert isinstance(r, ChurnScore)
    z = DEFAULT_BIAS + sum(c for _, c in r.factors)
    assert r.score == pytest.approx(1 / (1 + math.exp(-z)))
    assert [c for _, c in r.factors] == sorted((c for _, c in r.factors), reverse=True)
    assert {name for name, _ in r.factors} == set(FACTORS)
    for name, c in r.factors:
        assert c == pytest.approx(DEFAULT_WEIGHTS[name] * r.values[name])
        assert 0.0 <= r.values[name] <= 1.0


def test_loyal_customer_is_low_and_leaving_customer_is_high() -> None:
    s = ChurnScorer()
    loyal = s.score(LOYAL)
    assert loyal.score < 0.1
    assert churn_level(loyal.score, None) == "low"
    assert loyal.reasons == ["no strong churn signals"]
    leaving = dict(
        LOYAL,
        T=244,
        days_since_last_purchase=44,
        days_since_last_event=41,
        active_days_30d=0,
        events_30d=0,
        events_90d=50,
        sessions_30d=0,
        tickets_30d=2,
        tickets_90d=2,
        escalations_90d=2,
        nps_last=3,
        nps_category="detractor",
        nps_trend=-5.5,
    )
    r = s.score(leaving)
    assert r.score > 0.9
    assert churn_level(r.score, None) == "high"
    assert len(r.reasons) == 3
    text = " | ".join(r.reasons)
    assert "no activity for 41 days (usually every 10 days)" in text
    assert "2 support tickets in the last 30 days, usually none, 2 escalated in 90 days" in text
    assert "activity down 100%" in text
    more = ChurnScorer(max_reasons=4).score(leaving).reasons
    assert more[3] == "NPS dropped by 6 points to 3 (detractor)"


def test_every_none_feature_dict_scores_at_the_bias() -> None:
    keys = [*list(LOYAL), "nps_category", "sessions_90d"]
    r = ChurnScorer().score(dict.fromkeys(keys), None)
    assert r.score == pytest.approx(1 / (1 + math.exp(-DEFAULT_BIAS)))
    assert "not_alive" not in r.values and "inactivity" not in r.values
    assert ChurnScorer().score({}).score == r.score


def test_no_purchase_customer_scored_from_engagement_only() -> None:
    # read_features gives frequency = recency = 0, T = None for non-buyers.
    browser = {
        "frequency": 0,
        "recency": 0,
        "T": None,
        "orders": 0,
        "days_since_last_event": 40,
        "active_days_30d": 0,
        "events_30d": 0,
        "events_90d": 30,
    }
    r = ChurnScorer().score(browser)
    assert "not_alive" not in r.values
    assert r.values["inactivity"] > 0.3 and r.values["engagement_decline"] > 0.8
    assert r.score > 0.3
    assert any("no activity for 40 days" in reason for reason in r.reasons)


def test_bgnbd_factor_uses_the_given_params() -> None:
    f = dict(LOYAL, T=300, days_since_last_purchase=100)
    slow = BGNBDParams(r=0.5, alpha=400.0, a=0.8, b=2.4)  # slow buyers: silence is normal
    assert (
        ChurnScorer().score(f, slow).values["not_alive"]
        < ChurnScorer().score(f).values["not_alive"]
    )


def test_each_factor_raises_the_score_monotonically() -> None:
    s = ChurnScorer()
    # Rhythm from lifetime sessions, so that varying the silence alone is consistent.
    loyal = dict(LOYAL, active_days_30d=None, sessions=60)
    base = s.score(loyal).score
    variations: dict[str, list[float]] = {
        "days_since_last_event": [5, 20, 60, 120],
        "escalations_90d": [1, 2, 4],
        "tickets_90d": [1, 3, 6],
        "open_tickets": [1, 3],
        "nps_last": [6, 3, 0],
        "csat_avg": [3.0, 2.0, 1.0],
        "events_30d": [30, 10, 0],
        "T": [250, 400, 800],
    }
    for key, seq in variations.items():
        prev = base
        for v in seq:
            cur = s.score(dict(loyal, **{key: v})).score
            assert cur >= prev - 1e-12, (key, v)
            prev = cur
        assert prev > base, key


def test_support_reads_a_rise_over_the_customers_own_rate() -> None:
    """Chronic ticket load counts little; a rise over the customer's usual rate counts."""
    s = ChurnScorer()
    # 15 tickets in 90 days, 5 of them in the last 30: their usual 5 a month.
    chronic = dict(LOYAL, tickets_30d=5, tickets_90d=15, escalations_90d=5, reopened=4)
    # Same 90-day load, but 11 in the last 30 days against 2 a month before.
    rising = dict(chronic, tickets_30d=11)
    quiet = dict(LOYAL, tickets_30d=0, tickets_90d=0)
    v_chronic = s.score(chronic).values["support"]
    v_rising = s.score(rising).values["support"]
    assert 0.2 < v_chronic <= 0.25  # the level share only
    assert v_rising > 0.85
    assert s.score(quiet).values["support"] == 0.0
    assert s.score(rising).reasons[0] == (
        "11 support tickets in the last 30 days, usually 2 a month, "
        "5 escalated in 90 days, 4 reopened"
    )
    # A level-only support factor stays below the reason threshold... unless it is high.
    assert all("support" not in r for r in s.score(dict(LOYAL, tickets_90d=2)).reasons)
    # More recent tickets over the same earlier rate: never less risk.
    prev = 0.0
    for t30 in range(8):
        v = s.score(dict(LOYAL, tickets_30d=t30, tickets_90d=t30 + 4)).values["support"]
        assert v >= prev
        prev = v
    # One ticket for someone who never needed support vs for someone who
    # usually has two a month.
    first = s.score(dict(LOYAL, tickets_30d=1, tickets_90d=1)).values["support"]
    usual = s.score(dict(LOYAL, tickets_30d=1, tickets_90d=5)).values["support"]
    assert first > 0.3 > usual
    words = s.score(dict(LOYAL, days_since_last_event=40, tickets_30d=3, tickets_90d=3)).reasons
    assert "3 support tickets in the last 30 days, usually none" in words
    low = ChurnScorer(min_reason_contribution=0.0)
    one = low.score(dict(LOYAL, tickets_30d=2, tickets_90d=3)).reasons
    assert "2 support tickets in the last 30 days, usually less than 1 a month" in one


def test_sentiment_reads_a_drop_more_than_a_chronic_detractor() -> None:
    s = ChurnScorer()
    chronic = dict(LOYAL, nps_last=2, nps_category="detractor", nps_trend=0.5, csat_avg=1.8)
    dropped = dict(LOYAL, nps_last=5, nps_category="detractor", nps_trend=-4.0)
    v_chronic = s.score(chronic).values["sentiment"]
    v_dropped = s.score(dropped).values["sentiment"]
    assert v_chronic <= 0.3  # the level share only
    assert v_dropped > 0.7
    assert s.score(dropped).reasons == ["NPS dropped by 4 points to 5 (detractor)"]
    # Chronic dissatisfaction is still named, but weighs at most 0.45 log-odds...
    r = s.score(chronic)
    assert dict(r.factors)["sentiment"] <= 0.45 + 1e-12
    assert r.reasons == ["NPS 2 (detractor), low satisfaction (CSAT 1.8/5)"]
    assert churn_level(r.score, None) == "low"
    # ...and does not make a customer with heavy chronic support and detractor feedback a
    # `high` one after a few quiet days.
    heavy = dict(chronic, tickets_30d=5, tickets_90d=16, escalations_90d=6, reopened=6)
    heavy.update(days_since_last_event=6, active_days_30d=8)
    assert churn_level(s.score(heavy).score, None) == "low"
    # The same customer whose tickets and NPS turned for the worse is `high`.
    turning = dict(heavy, tickets_30d=12, nps_trend=-3.0)
    assert churn_level(s.score(turning).score, None) == "high"


def test_rhythm_makes_the_same_silence_mean_different_risk() -> None:
    s = ChurnScorer()
    daily = dict(LOYAL, active_days_30d=25, days_since_last_event=14)
    monthly = dict(LOYAL, active_days_30d=1, frequency=4, recency=120, days_since_last_event=14)
    assert s.score(daily).values["inactivity"] > 0.7
    assert s.score(monthly).values["inactivity"] == 0.0
    assert s.typical_gap_days(monthly) == (30.0, True)


def test_reasons_are_limited_and_thresholded() -> None:
    f = dict(LOYAL, days_since_last_event=60, escalations_90d=3, nps_last=0, csat_avg=1.0)
    assert len(ChurnScorer(max_reasons=2).score(f).reasons) == 2
    assert ChurnScorer(min_reason_contribution=10).score(f).reasons == ["no strong churn signals"]
    only_csat = ChurnScorer().score(dict(LOYAL, csat_avg=1.0))
    assert only_csat.reasons == ["low satisfaction (CSAT 1.0/5)"]


def test_model_version_is_deterministic_and_tracks_weights() -> None:
    a, b = ChurnScorer(), ChurnScorer()
    assert a.model_version() == b.model_version()
    assert a.model_version() != ChurnScorer(bias=-2.0).model_version()
    fitted = BGNBDParams(r=1, alpha=2, a=3, b=4, version="fit-7")
    assert a.model_version(fitted).endswith("+bgnbd-fit-7")


def test_score_cost_is_small() -> None:
    s = ChurnScorer()
    f = dict(LOYAL, days_since_last_event=41, escalations_90d=2, nps_last=3, nps_trend=-4)
    n = 5000
    t0 = time.perf_counter()
    for _ in range(n):
        s.score(f, DEFAULT_PARAMS)
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 1e-3  # ~50 us on a laptop; generous bound for CI


# --------------------------------------------------------------------- levels
def test_churn_level_bands() -> None:
    t = DEFAULT_THRESHOLDS
    assert (t.high_enter, t.high_exit, t.medium_enter, t.medium_exit) == (0.7, 0.6, 0.4, 0.3)
    cases = [
        (0.0, None, "low"),
        (0.39, "low", "low"),
        (0.4, "low", "medium"),
        (0.7, "low", "high"),
        (0.69, "medium", "medium"),
        (0.3, "medium", "medium"),
        (0.29, "medium", "low"),
        (0.6, "high", "high"),
        (0.59, "high", "medium"),
        (0.31, "high", "medium"),
        (0.29, "high", "low"),
        (1.0, "high", "high"),
    ]
    for score, prev, expected in cases:
        assert churn_level(score, prev) == expected, (score, prev)
    with pytest.raises(ValueError):
        churn_level(0.5, "critical")
    with pytest.raises(ValueError):
        LevelThresholds(high_enter=0.5, high_exit=0.6)


def test_noisy_score_around_a_threshold_rarely_changes_level() -> None:
    rng = np.random.default_rng(7)
    for centre in (0.3, 0.4, 0.6, 0.7):  # each threshold
        scores = np.clip(centre + rng.normal(0, 0.03, size=2000), 0, 1)
        level: str | None = None
        changes_hyst = 0
        changes_naive = 0
        naive_prev = None
        for x in scores:
            new = churn_level(float(x), level)
            changes_hyst += level is not None and new != level
            level = new
            naive = "high" if x >= 0.7 else "medium" if x >= 0.4 else "low"
            changes_naive += naive_prev is not None and naive != naive_prev
            naive_prev = naive
        # Noise of sd 0.03 rarely spans a 0.1 band (3.3 sd).
        assert changes_hyst <= 6, (centre, changes_hyst)
        if centre in (0.4, 0.7):
            assert changes_naive > 500  # without hysteresis it flaps constantly


def test_level_sequence_follows_a_real_trend() -> None:
    levels = []
    level = None
    for x in [0.1, 0.2, 0.45, 0.5, 0.38, 0.72, 0.65, 0.61, 0.55, 0.25]:
        level = churn_level(x, level)
        levels.append(level)
    assert levels == [
        "low",
        "low",
        "medium",
        "medium",
        "medium",
        "high",
        "high",
        "high",
        "medium",
        "low",
    ]


# ------------------------------------------------------------- end to end
DAY0 = 20_000


def test_end_to_end_with_read_features() -> None:
    from models.features import apply_event, new_state, read_features

    state = new_state()
    d0 = DAY0
    for i, d in enumerate(range(d0, d0 + 120, 4)):
        ev = {"event_id": f"b{i}", "customer_id": "c", "ts": d * MS_PER_DAY}
        apply_event(state, "browsing", {**ev, "session_id": f"s{i}", "action": "product_view"})
    for i, d in enumerate(range(d0, d0 + 120, 20)):
        ev = {"event_id": f"p{i}", "customer_id": "c", "ts": d * MS_PER_DAY + 5}
        order = {"order_id": f"o{i}", "amount": 10, "items": 1, "category": "x", "channel": "web"}
        apply_event(state, "purchases", {**ev, **order})
    levels = []
    level = None
    for day in (d0 + 117, d0 + 135, d0 + 160):
        f = read_features(state, day * MS_PER_DAY)
        r = ChurnScorer().score(f)
        level = churn_level(r.score, level)
        levels.append(level)
    assert levels == ["low", "medium", "high"]
    assert r.reasons[0].startswith("no activity for 44 days (usually every 4 days)")


# ------------------------------------------------------------------- learner
def test_roc_auc_matches_sklearn() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        n = int(rng.integers(5, 400))
        y = rng.random(n) < rng.uniform(0.1, 0.9)
        if y.all() or not y.any():
            continue
        continuous = rng.random(n) + y * rng.uniform(0, 0.5)
        tied = np.round(continuous * 4) / 4  # many ties
        assert roc_auc(continuous, y) == pytest.approx(roc_auc_score(y, continuous))
        assert roc_auc(tied, y) == pytest.approx(roc_auc_score(y, tied))
    with pytest.raises(ValueError):
        roc_auc([0.1, 0.2], [1, 1])


def test_precision_at_top_matches_sklearn() -> None:
    rng = np.random.default_rng(12)
    for fraction in (0.01, 0.1, 0.25, 1.0):
        n = 1000
        y = rng.random(n) < 0.2
        s = rng.random(n) + 0.3 * y
        k = math.ceil(fraction * n)
        predicted = s >= np.sort(s)[::-1][k - 1]
        assert predicted.sum() == k
        assert precision_at_top(s, y, fraction) == pytest.approx(precision_score(y, predicted))
    with pytest.raises(ValueError):
        precision_at_top([0.1], [1], 0.0)


def test_recency_baseline() -> None:
    assert recency_baseline_score({"days_since_last_event": 0}) == 0.0
    assert recency_baseline_score({"days_since_last_event": 30}) == 0.5
    assert recency_baseline_score({"days_since_last_event": None}) == 0.5
    assert 0.9 < recency_baseline_score({"days_since_last_event": 1000}) < 1.0


# ------------------------------------------------------- synthetic population
def simulate_population(n: int, seed: int, cutoff: int = 365) -> tuple[list[dict[str, Any]], Any]:
    """Customers from a BG/NBD-like process, features at ``cutoff``, latent labels.

    * Purchases: first purchase on an acquisition day in [0, 330); repeat
      purchases at exponential gaps, rate ``lambda ~ Gamma(2, 1/40)`` per day
      (mean one every 20 days); after each repeat purchase the customer dies
      with probability ``p ~ Beta(1, 5)`` (BG/NBD). Label = dead at the cut-off.
    * Browsing: active days at rate ``m * lambda`` (``m ~ U(1, 6)``),
      ``1 + Poisson(4)`` events per active day; everything stops at death.
    * Signals planted *with noise*, only for some churners, during the 60 days
      before death: 45 % get 1-3 tickets (each escalated w.p. 0.5), 40 % answer
      an NPS survey with a detractor score 0-6 and 50 % browse at half their
      rate. Survivors get the same signals at base rates: tickets at 1.5 a year
      (escalated w.p. 0.2), NPS answers twice a year with 20 % detractors, and
      20 % have a quiet spell (half rate) in the last 45 days. So no signal is
      proof: every one also appears among survivors.
    """
    rng = np.random.default_rng(seed)
    feats: list[dict[str, Any]] = []
    labels = np.zeros(n, dtype=bool)
    for i in range(n):
        start = int(rng.integers(0, cutoff - 35))
        lam = rng.gamma(2.0, 1.0 / 40.0)
        p = rng.beta(1.0, 5.0)
        purchases = [float(start)]
        t = float(start)
        death = math.inf
        while True:
            t += rng.exponential(1.0 / lam)
            if t > cutoff:
                break
            purchases.append(t)
            if rng.random() < p:
                death = t
                break
        dead = death <= cutoff
        labels[i] = dead
        end = min(death, cutoff)
        # Browsing active days.
        rate = lam * rng.uniform(1.0, 6.0)
        quiet_from = math.inf
        if dead and rng.random() < 0.5:
            quiet_from = death - 60
        elif not dead and rng.random() < 0.2:
            quiet_from = cutoff - 45
        days: list[float] = []
        t = float(start)
        while True:
            r = rate / 2 if t >= quiet_from else rate
            t += rng.exponential(1.0 / r)
            if t > end:
                break
            days.append(t)
        events = {int(d): 1 + int(rng.poisson(4.0)) for d in days}
        # Support tickets: (day, escalated).
        tickets: list[tuple[int, bool]] = []
        n_base = rng.poisson(1.5 * (end - start) / 365)
        for d in rng.uniform(start, end, size=n_base):
            tickets.append((int(d), bool(rng.random() < 0.2)))
        if dead and rng.random() < 0.45:
            for _ in range(int(rng.integers(1, 4))):
                d = death - rng.uniform(0, 60)
                if d >= start:
                    tickets.append((int(d), bool(rng.random() < 0.5)))
        # NPS answers: (day, score).
        nps: list[tuple[int, int]] = []
        n_nps = rng.poisson(2.0 * (end - start) / 365)
        for d in rng.uniform(start, end, size=n_nps):
            score = int(rng.integers(0, 7)) if rng.random() < 0.2 else int(rng.integers(7, 11))
            nps.append((int(d), score))
        if dead and rng.random() < 0.4:
            d = death - rng.uniform(0, 60)
            if d >= start:
                nps.append((int(d), int(rng.integers(0, 7))))
        feats.append(_features_at(cutoff, purchases, events, tickets, nps))
    return feats, labels


def _features_at(
    clock: int,
    purchases: list[float],
    events: dict[int, int],
    tickets: list[tuple[int, bool]],
    nps: list[tuple[int, int]],
) -> dict[str, Any]:
    """The read_features conventions (whole calendar days), from raw histories."""
    pdays = sorted({int(x) for x in purchases})
    for d in pdays:
        events[d] = events.get(d, 0) + 1
    for d, _ in tickets:
        events[d] = events.get(d, 0) + 1
    for d, _ in nps:
        events[d] = events.get(d, 0) + 1
    last_event = max(events)
    in30 = [d for d in events if d > clock - 30]
    in90 = [d for d in events if d > clock - 90]
    nps_sorted = sorted(nps)
    nps_last = nps_sorted[-1][1] if nps_sorted else None
    nps_trend = None
    if len(nps_sorted) >= 2:
        earlier = [s for _, s in nps_sorted[:-1]]
        nps_trend = nps_sorted[-1][1] - sum(earlier) / len(earlier)
    category = None
    if nps_last is not None:
        category = "promoter" if nps_last >= 9 else "passive" if nps_last >= 7 else "detractor"
    return {
        "frequency": len(pdays) - 1,
        "recency": pdays[-1] - pdays[0],
        "T": clock - pdays[0],
        "orders": len(purchases),
        "days_since_last_purchase": clock - pdays[-1],
        "days_since_last_event": clock - last_event,
        "events_30d": sum(events[d] for d in in30),
        "events_90d": sum(events[d] for d in in90),
        "active_days_30d": len(in30),
        "sessions_30d": len(in30),
        "sessions": len(events),
        "tickets_30d": sum(1 for d, _ in tickets if d > clock - 30),
        "tickets_90d": sum(1 for d, _ in tickets if d > clock - 90),
        "escalations_90d": sum(1 for d, e in tickets if e and d > clock - 90),
        "open_tickets": sum(1 for d, _ in tickets if d > clock - 7),
        "reopened": 0,
        "nps_last": nps_last,
        "nps_category": category,
        "nps_trend": nps_trend,
        "csat_avg": None,
        "review_avg": None,
    }


def test_scorer_beats_recency_baseline_on_synthetic_population() -> None:
    """ROC AUC on the customers outreach can still reach (active in the last 60 days).

    Customers silent for months are trivially found by any method (both the
    scorer and recency reach AUC ~0.96 on the whole population, where recency
    alone is as good); the ranking that matters to a retention team is among
    the still-active customers.
    """
    feats, labels = simulate_population(4000, seed=2024)
    assert 0.15 < labels.mean() < 0.7
    scorer = ChurnScorer()
    scores = np.array([scorer.score(f).score for f in feats])
    baseline = np.array([recency_baseline_score(f) for f in feats])
    assert roc_auc(scores, labels) >= 0.9  # whole population, sanity
    reachable = np.array([f["days_since_last_event"] <= 60 for f in feats])
    y = labels[reachable]
    assert 0.1 < y.mean() < 0.4
    auc, auc_base = roc_auc(scores[reachable], y), roc_auc(baseline[reachable], y)
    p10 = precision_at_top(scores[reachable], y)
    p10_base = precision_at_top(baseline[reachable], y)
    print(f"AUC scorer={auc:.3f} recency={auc_base:.3f}; P@10% {p10:.3f} vs {p10_base:.3f}")
    assert auc >= 0.7
    assert auc >= auc_base + 0.02
    assert p10 >= p10_base + 0.05


def test_bgnbd_fit_on_population_recovers_the_generating_process() -> None:
    from models.btyd import fit_bgnbd

    feats, labels = simulate_population(3000, seed=99)
    x = np.array([f["frequency"] for f in feats], dtype=float)
    tx = np.array([f["recency"] for f in feats], dtype=float)
    big_t = np.array([f["T"] for f in feats], dtype=float)
    params = fit_bgnbd(x, tx, big_t)
    # Generated with r=2, alpha=40 (Gamma(2, 1/40)), a=1, b=5, on whole-day summaries.
    assert params.r == pytest.approx(2.0, rel=0.3)
    assert params.alpha == pytest.approx(40.0, rel=0.3)
    assert params.a / (params.a + params.b) == pytest.approx(1 / 6, rel=0.3)
    scorer = ChurnScorer()
    reachable = np.array([f["days_since_last_event"] <= 60 for f in feats])
    y = labels[reachable]
    fitted = roc_auc([scorer.score(f, params).score for f in np.array(feats)[reachable]], y)
    default = roc_auc([scorer.score(f).score for f in np.array(feats)[reachable]], y)
    print(f"AUC fitted={fitted:.3f} default={default:.3f} params={params}")
    assert fitted >= default - 0.02
