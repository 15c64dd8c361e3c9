"""Churn risk: an explainable score and levels with hysteresis.

The score is a logistic combination of five interpretable factors, each a
number in ``[0, 1]`` computed from the flat feature dict of
:func:`models.features.read_features` (any value may be ``None``; a missing
value is "no evidence", factor 0)::

    z     = bias + sum(weight[f] * value[f] for each factor f)
    score = 1 / (1 + exp(-z))

=====================  ========  ==================================================
factor                 weight    value in [0, 1]
=====================  ========  ==================================================
``not_alive``          2.0       1 - P(alive) from BG/NBD (:mod:`models.btyd`);
                                 only for customers with a purchase
``inactivity``         3.0       silence relative to the customer's own rhythm:
                                 ``u / (u + 3)``, ``u = max(0, days_silent / gap - 1)``
``engagement_decline`` 1.5       drop of events (and sessions, when a 90-day count
                                 exists) in the last 30 days vs the 60 before
``support``            2.0       mostly a *rise* of tickets in the last 30 days over
                                 the customer's own monthly rate (the 60 days
                                 before); a quarter at most for the load itself
                                 (tickets, escalations, open, reopened)
``sentiment``          1.5       mostly an NPS *drop* against the customer's earlier
                                 answers; 30 % at most for chronic dissatisfaction
                                 (detractor NPS, low CSAT, low reviews)
=====================  ========  ==================================================

with ``bias = -3`` (a customer with no risk signal scores 0.047). Each factor's
contribution is ``weight * value`` in log-odds, so the factors explain the score
additively and the top contributions become human-readable ``reasons``.
Support and sentiment read *change* against the customer's own history more
than levels: a customer who always raises many tickets or always answers as a
detractor is not at risk for that alone (chronic load reaches at most
``0.5`` log-odds of support and ``0.45`` of sentiment).
Customers with no purchase have no BG/NBD factor: they are scored from
engagement, support and sentiment alone.

See ``docs/churn.md`` for the reasoning, levels and evaluation.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from models.btyd import DEFAULT_PARAMS, BGNBDParams, prob_alive

__all__ = [
    "DEFAULT_BIAS",
    "DEFAULT_THRESHOLDS",
    "DEFAULT_WEIGHTS",
    "FACTORS",
    "FORMULA_VERSION",
    "LEVELS",
    "ChurnScore",
    "ChurnScorer",
    "LevelThresholds",
    "churn_level",
    "level_thresholds",
    "precision_at_top",
    "recency_baseline_score",
    "roc_auc",
]

#: Factor names, in the order they are computed.
FACTORS: tuple[str, ...] = (
    "not_alive",
    "inactivity",
    "engagement_decline",
    "support",
    "sentiment",
)

#: Hand-set log-odds weights (each factor value is in [0, 1]).
DEFAULT_WEIGHTS: dict[str, float] = {
    "not_alive": 2.0,
    "inactivity": 3.0,
    "engagement_decline": 1.5,
    "support": 2.0,
    "sentiment": 1.5,
}

#: Log-odds of a customer with no risk signal (score 0.047).
DEFAULT_BIAS = -3.0

#: Support load: per ticket in 90 days, escalation in 90 days, open ticket,
#: reopened ticket (``load``; the level part is ``1 - exp(-load)``).
_SUPPORT_LOAD = (0.3, 0.8, 0.5, 0.5)
#: Share of the support value that the load *level* can reach; the rest is
#: for a rise of tickets over the customer's own monthly rate.
_SUPPORT_LEVEL_SHARE = 0.25
#: Rise part ``1 - exp(-k * surge)``, ``surge = rise / sqrt(usual + 1)``.
_SUPPORT_RISE_K = 0.7
#: Share of the sentiment value that chronic dissatisfaction can reach; the
#: rest is for an NPS drop against the customer's own earlier answers.
_SENTIMENT_LEVEL_SHARE = 0.3
#: An NPS drop of this many points counts in full.
_NPS_DROP_FULL = 4.0
#: Bumped whenever a factor's formula changes (part of ``model_version``).
FORMULA_VERSION = 2

#: Churn levels, lowest first.
LEVELS: tuple[str, ...] = ("low", "medium", "high")


def _num(features: Mapping[str, Any], key: str) -> float | None:
    """Feature as float, ``None`` when missing, ``None``, NaN or not a number."""
    value = features.get(key)
    if value is None or isinstance(value, str):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _plural(n: float, word: str) -> str:
    k = round(n)
    return f"{k} {word}" if k == 1 else f"{k} {word}s"


# ------------------------------------------------------------------ factors
# Each factor function adds its value to ``values`` and the raw numbers its
# reason text needs to ``ctx`` (both in FACTORS order: the reasons are listed
# in that order when contributions tie).


def _not_alive(
    features: Mapping[str, Any],
    params: BGNBDParams | None,
    p_alive: float | None,
    values: dict[str, float],
    ctx: dict[str, Any],
) -> None:
    """(a) BG/NBD: 1 - P(alive), purchasers only."""
    freq = _num(features, "frequency")
    big_t = _num(features, "T")
    orders = _num(features, "orders")
    if freq is None or big_t is None or not (orders is None or orders > 0):
        return
    rec = _num(features, "recency") or 0.0
    if p_alive is None:
        p_alive = prob_alive(freq, rec, big_t, params)
    values["not_alive"] = 1.0 - p_alive
    since_buy = _num(features, "days_since_last_purchase")
    ctx["p_alive"] = p_alive
    ctx["since_buy"] = max(big_t - rec, 0.0) if since_buy is None else since_buy


def _engagement_decline(
    features: Mapping[str, Any], values: dict[str, float], ctx: dict[str, Any]
) -> None:
    """(c) Engagement trend: last 30 days vs the monthly mean of the 60 before."""
    decline = 0.0
    for noun in ("events", "sessions"):
        recent = _num(features, f"{noun}_30d")
        longer = _num(features, f"{noun}_90d")
        if recent is None or longer is None:
            continue
        before = max(longer - recent, 0.0) / 2.0
        if before <= 0:
            continue
        d = max(0.0, before - recent) / (before + 2.0)  # +2 shrinks tiny counts
        if d > decline:
            decline = d
            ctx["trend"] = (noun, recent, before)
    values["engagement_decline"] = decline


def _support(features: Mapping[str, Any], values: dict[str, float], ctx: dict[str, Any]) -> None:
    """(d) Support: a rise of tickets over the customer's own rate, plus a
    small share for the load itself."""
    t90 = _num(features, "tickets_90d")
    t30 = _num(features, "tickets_30d")
    escalations = _num(features, "escalations_90d") or 0.0
    open_tickets = _num(features, "open_tickets") or 0.0
    reopened = _num(features, "reopened") or 0.0
    tickets = t90 or 0.0
    load = (
        _SUPPORT_LOAD[0] * tickets
        + _SUPPORT_LOAD[1] * escalations
        + _SUPPORT_LOAD[2] * open_tickets
        + _SUPPORT_LOAD[3] * reopened
    )
    support = _SUPPORT_LEVEL_SHARE * (1.0 - math.exp(-load))
    usual = None
    if t30 is not None and t90 is not None:
        usual = max(t90 - t30, 0.0) / 2.0  # a month's tickets in the 60 days before
        rise = max(0.0, t30 - usual)
        if rise > 0:
            surge = rise / math.sqrt(usual + 1.0)
            support += (1.0 - _SUPPORT_LEVEL_SHARE) * (1.0 - math.exp(-_SUPPORT_RISE_K * surge))
    values["support"] = support
    ctx["support"] = (tickets, escalations, open_tickets, reopened, t30, usual)


def _sentiment(features: Mapping[str, Any], values: dict[str, float], ctx: dict[str, Any]) -> None:
    """(e) Sentiment: an NPS drop, plus a small share for chronic
    dissatisfaction (detractor NPS, low CSAT, low reviews; noisy-or)."""
    nps = _num(features, "nps_last")
    trend = _num(features, "nps_trend")
    csat = _num(features, "csat_avg")
    review = _num(features, "review_avg")
    keep = 1.0
    if nps is not None and nps <= 6:
        keep *= 1.0 - (7.0 - nps) / 7.0
    elif nps is None and features.get("nps_category") == "detractor":
        keep *= 0.5
    if csat is not None and csat < 3.5:
        keep *= 1.0 - min(1.0, (3.5 - csat) / 2.5)
    if review is not None and review < 3.5:
        keep *= 1.0 - 0.5 * min(1.0, (3.5 - review) / 2.5)
    sentiment = _SENTIMENT_LEVEL_SHARE * (1.0 - keep)
    if trend is not None and trend < 0:
        sentiment += (1.0 - _SENTIMENT_LEVEL_SHARE) * min(1.0, -trend / _NPS_DROP_FULL)
    values["sentiment"] = sentiment
    ctx["sentiment"] = (nps, trend, csat, review, features.get("nps_category"))


# ------------------------------------------------------------- reason texts
# The words for one factor from the numbers its factor function left in ctx.


def _not_alive_text(ctx: Mapping[str, Any]) -> str | None:
    return (
        f"{round(100 * (1 - ctx['p_alive']))}% chance they have stopped buying "
        f"(last purchase {_plural(ctx['since_buy'], 'day')} ago)"
    )


def _inactivity_text(ctx: Mapping[str, Any]) -> str | None:
    usual = f" (usually every {_plural(ctx['gap'], 'day')})" if ctx["measured"] else ""
    return f"no activity for {_plural(ctx['silent'], 'day')}{usual}"


def _engagement_decline_text(ctx: Mapping[str, Any]) -> str | None:
    if "trend" not in ctx:
        return None
    noun, recent, before = ctx["trend"]
    drop = round(100 * (1 - recent / before))
    return (
        f"activity down {drop}% ({_plural(recent, noun[:-1])} in the last 30 days "
        f"vs about {round(before)} a month before)"
    )


def _support_text(ctx: Mapping[str, Any]) -> str | None:
    tickets, escalations, open_tickets, reopened, t30, usual = ctx["support"]
    parts = []
    if usual is not None and t30 > usual:
        # A rise: this month's tickets against the usual month's.
        parts.append(f"{_plural(t30, 'support ticket')} in the last 30 days, {_usual(usual)}")
        if escalations > 0:
            parts.append(f"{round(escalations)} escalated in 90 days")
    elif tickets > 0:
        head = f"{_plural(tickets, 'support ticket')} in 90 days"
        if escalations > 0:
            head += f", {round(escalations)} escalated"
        parts.append(head)
    elif escalations > 0:
        parts.append(f"{_plural(escalations, 'escalated support ticket')} in 90 days")
    if open_tickets > 0:
        parts.append(f"{round(open_tickets)} still open")
    if reopened > 0:
        parts.append(f"{round(reopened)} reopened")
    return ", ".join(parts) or None


def _usual(tickets_a_month: float) -> str:
    """The customer's usual number of support tickets a month, in words."""
    if tickets_a_month <= 0:
        return "usually none"
    if tickets_a_month < 1:
        return "usually less than 1 a month"
    return f"usually {round(tickets_a_month)} a month"


def _sentiment_text(ctx: Mapping[str, Any]) -> str | None:
    nps, trend, csat, review, category = ctx["sentiment"]
    detractor = (nps is not None and nps <= 6) or (nps is None and category == "detractor")
    words = []
    if trend is not None and trend < 0:
        tail = f" to {round(nps)}" if nps is not None else ""
        tag = " (detractor)" if detractor else ""
        words.append(f"NPS dropped by {_plural(-trend, 'point')}{tail}{tag}")
    elif detractor:
        words.append(f"NPS {round(nps)} (detractor)" if nps is not None else "NPS detractor")
    if csat is not None and csat < 3.5:
        words.append(f"low satisfaction (CSAT {csat:.1f}/5)")
    if review is not None and review < 3.5:
        words.append(f"poor reviews ({review:.1f}/5)")
    return ", ".join(words) or None


_REASON_TEXTS: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "not_alive": _not_alive_text,
    "inactivity": _inactivity_text,
    "engagement_decline": _engagement_decline_text,
    "support": _support_text,
    "sentiment": _sentiment_text,
}


@dataclass(frozen=True, slots=True)
class ChurnScore:
    """Result of :meth:`ChurnScorer.score`.

    Attributes
    ----------
    score
        Churn risk in ``[0, 1]``.
    factors
        ``(factor, contribution)`` for every factor that applies, largest
        contribution first; contributions are in log-odds (``weight * value``)
        and add up with the bias to ``logit(score)``.
    reasons
        The top factors in words a retention agent understands.
    values
        The raw factor values in ``[0, 1]`` (what a learner trains on).
    """

    score: float
    factors: list[tuple[str, float]]
    reasons: list[str]
    values: dict[str, float] = field(default_factory=dict)


class ChurnScorer:
    """Explainable churn score: logistic combination of interpretable factors.

    Parameters
    ----------
    weights
        Log-odds weight per factor; missing factors take
        :data:`DEFAULT_WEIGHTS`. Stored merged with the defaults.
    bias
        Log-odds with no risk signal at all.
    default_gap_days
        The rhythm assumed when a customer has none we can measure
        (no active day in 30 days and fewer than two purchase days).
    min_gap_days, max_gap_days
        Bounds on the measured rhythm. The upper bound makes a very long
        silence count even for customers who were always slow.
    max_reasons
        How many reasons to return at most.
    min_reason_contribution
        A factor becomes a reason only when its contribution (log-odds)
        reaches this value.

    Examples
    --------
    >>> scorer = ChurnScorer()
    >>> loyal = {"frequency": 20, "recency": 200, "T": 203, "orders": 21,
    ...          "days_since_last_event": 1, "active_days_30d": 12,
    ...          "events_30d": 40, "events_90d": 110, "tickets_90d": 0}
    >>> r = scorer.score(loyal, None)
    >>> round(r.score, 3), r.reasons
    (0.052, ['no strong churn signals'])
    >>> leaving = dict(loyal, days_since_last_event=41, days_since_last_purchase=41,
    ...                T=241, active_days_30d=0, events_30d=0, events_90d=60,
    ...                tickets_30d=3, tickets_90d=5, escalations_90d=2, nps_last=3,
    ...                nps_trend=-5, nps_category="detractor")
    >>> r = scorer.score(leaving, None)
    >>> round(r.score, 3)
    0.975
    >>> for reason in r.reasons:
    ...     print(reason)
    no activity for 41 days (usually every 10 days)
    3 support tickets in the last 30 days, usually 1 a month, 2 escalated in 90 days
    activity down 100% (0 events in the last 30 days vs about 30 a month before)
    >>> [name for name, _ in r.factors]
    ['inactivity', 'support', 'engagement_decline', 'sentiment', 'not_alive']
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        bias: float = DEFAULT_BIAS,
        default_gap_days: float = 14.0,
        min_gap_days: float = 1.0,
        max_gap_days: float = 45.0,
        max_reasons: int = 3,
        min_reason_contribution: float = 0.3,
    ) -> None:
        merged = dict(DEFAULT_WEIGHTS)
        if weights is not None:
            unknown = set(weights) - set(FACTORS)
            if unknown:
                raise ValueError(f"unknown churn factors: {sorted(unknown)}")
            merged.update({k: float(v) for k, v in weights.items()})
        if not 0 < min_gap_days <= default_gap_days <= max_gap_days:
            raise ValueError("need 0 < min_gap_days <= default_gap_days <= max_gap_days")
        self.weights = merged
        self.bias = float(bias)
        self.default_gap_days = float(default_gap_days)
        self.min_gap_days = float(min_gap_days)
        self.max_gap_days = float(max_gap_days)
        self.max_reasons = int(max_reasons)
        self.min_reason_contribution = float(min_reason_contribution)

    def __repr__(self) -> str:
        return (
            f"ChurnScorer(weights={self.weights!r}, bias={self.bias!r}, "
            f"default_gap_days={self.default_gap_days!r}, min_gap_days={self.min_gap_days!r}, "
            f"max_gap_days={self.max_gap_days!r}, max_reasons={self.max_reasons!r}, "
            f"min_reason_contribution={self.min_reason_contribution!r})"
        )

    # ----------------------------------------------------------------- pieces
    def typical_gap_days(self, features: Mapping[str, Any]) -> tuple[float, bool]:
        """The customer's usual number of days between active days.

        Estimated from the activity *before* the current silence, so that the
        silence being judged does not stretch the yardstick:

        1. recent rhythm: ``n = active_days_30d`` active days in the
           ``30 - days_since_last_event`` days before the silence gives
           ``(30 - days_since_last_event) / (n - 0.5)`` (needs ``n >= 2``;
           the last active day sits on the edge and counts half);
        2. lifetime rhythm (buyers): ``(T - days_since_last_event) / sessions``,
           the active span since the first purchase over lifetime sessions;
        3. purchase rhythm: ``recency / frequency``, only when neither
           engagement rhythm is measurable.

        The shorter engagement estimate wins; the result is clipped to
        ``[min_gap_days, max_gap_days]``; ``default_gap_days`` when nothing is
        measurable. A numeric ``typical_gap_days`` entry in ``features`` pins
        the rhythm instead. Returns ``(gap, measured)``.

        Examples
        --------
        >>> s = ChurnScorer()
        >>> s.typical_gap_days({"active_days_30d": 5, "days_since_last_event": 3})
        (6.0, True)
        >>> s.typical_gap_days({"frequency": 2, "recency": 40})
        (20.0, True)
        >>> s.typical_gap_days({})
        (14.0, False)
        """
        pinned = _num(features, "typical_gap_days")
        if pinned is not None and pinned > 0:
            return min(max(pinned, self.min_gap_days), self.max_gap_days), True
        silent = _num(features, "days_since_last_event")
        since = 0.0 if silent is None else max(silent, 0.0)
        candidates = []
        active = _num(features, "active_days_30d")
        if active is not None and active >= 2 and since < 30:
            candidates.append((30.0 - since) / (active - 0.5))
        big_t = _num(features, "T")
        sessions = _num(features, "sessions")
        if big_t is not None and sessions is not None and sessions >= 2 and big_t - since > 0:
            candidates.append((big_t - since) / sessions)
        if not candidates:
            freq = _num(features, "frequency")
            rec = _num(features, "recency")
            if freq is not None and freq >= 1 and rec is not None and rec > 0:
                candidates.append(rec / freq)
        if not candidates:
            return self.default_gap_days, False
        gap = min(max(min(candidates), self.min_gap_days), self.max_gap_days)
        return gap, True

    def factor_values(
        self, features: Mapping[str, Any], params: BGNBDParams | None = None
    ) -> dict[str, float]:
        """Every applicable factor's value in ``[0, 1]`` (see the module doc).

        ``not_alive`` is absent for customers without a purchase.

        Examples
        --------
        >>> v = ChurnScorer().factor_values({"days_since_last_event": 30})
        >>> sorted(v), round(v["inactivity"], 3)  # 30 days vs the default 14
        (['engagement_decline', 'inactivity', 'sentiment', 'support'], 0.276)
        """
        return self.evaluate_factors(features, params)[0]

    def evaluate_factors(
        self,
        features: Mapping[str, Any],
        params: BGNBDParams | None,
        p_alive: float | None = None,
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Factor values, plus the raw numbers the reason texts need.

        ``p_alive`` replaces BG/NBD's P(alive) with another model's
        (:class:`models.churn_model.ChurnModel` passes its BG/NBD + Pareto/NBD one).
        """
        values: dict[str, float] = {}
        ctx: dict[str, Any] = {}
        _not_alive(features, params, p_alive, values, ctx)
        self._inactivity(features, values, ctx)
        _engagement_decline(features, values, ctx)
        _support(features, values, ctx)
        _sentiment(features, values, ctx)
        return values, ctx

    @staticmethod
    def reason_text(name: str, ctx: Mapping[str, Any]) -> str | None:
        """The words for one factor (only built for the reasons shown)."""
        text = _REASON_TEXTS.get(name)
        return None if text is None else text(ctx)

    def _inactivity(
        self, features: Mapping[str, Any], values: dict[str, float], ctx: dict[str, Any]
    ) -> None:
        """(b) Inactivity relative to the customer's own rhythm (:meth:`typical_gap_days`)."""
        silent = _num(features, "days_since_last_event")
        if silent is None:
            silent = _num(features, "days_since_last_purchase")
        if silent is None:
            return
        gap, measured = self.typical_gap_days(features)
        excess = max(0.0, silent / gap - 1.0)
        values["inactivity"] = excess / (excess + 3.0)
        ctx["silent"], ctx["gap"], ctx["measured"] = silent, gap, measured

    # ------------------------------------------------------------------ score
    def score(self, features: Mapping[str, Any], params: BGNBDParams | None = None) -> ChurnScore:
        """Churn risk of one customer from their feature dict.

        Parameters
        ----------
        features
            Flat feature dict as of the stream clock (values may be ``None``).
        params
            BG/NBD parameters fitted on the customer base;
            :data:`models.btyd.DEFAULT_PARAMS` when ``None``.

        Examples
        --------
        >>> r = ChurnScorer().score({"days_since_last_event": 2, "active_days_30d": 10})
        >>> round(r.score, 3), r.factors[0], r.reasons
        (0.047, ('inactivity', 0.0), ['no strong churn signals'])
        """
        values, ctx = self.evaluate_factors(features, params)
        z = self.bias
        contributions = []
        for name in FACTORS:
            if name in values:
                c = self.weights[name] * values[name]
                z += c
                contributions.append((name, c))
        contributions.sort(key=lambda item: -item[1])
        score = 1.0 / (1.0 + math.exp(-z)) if z >= -700 else 0.0
        reasons = []
        for name, c in contributions[: self.max_reasons]:
            if c >= self.min_reason_contribution:
                text = self.reason_text(name, ctx)
                if text:
                    reasons.append(text)
        if not reasons:
            reasons = ["no strong churn signals"]
        return ChurnScore(score=score, factors=contributions, reasons=reasons, values=values)

    def model_version(self, params: BGNBDParams | None = None) -> str:
        """Deterministic version label for ``model_version`` fields.

        Examples
        --------
        >>> ChurnScorer().model_version()
        'churn-66e679f6+bgnbd-default'
        """
        p = DEFAULT_PARAMS if params is None else params
        blob = repr(
            (
                sorted(self.weights.items()),
                self.bias,
                self.default_gap_days,
                self.min_gap_days,
                self.max_gap_days,
                FORMULA_VERSION,
            )
        )
        digest = hashlib.sha256(blob.encode()).hexdigest()[:8]
        return f"churn-{digest}+bgnbd-{p.version}"


# ---------------------------------------------------------------- levels
@dataclass(frozen=True, slots=True)
class LevelThresholds:
    """Enter/exit bands of the churn levels (hysteresis).

    A customer enters ``high`` at ``score >= high_enter`` and leaves it only
    when ``score < high_exit``; the same for ``medium``. ``exit <= enter``.

    Examples
    --------
    >>> LevelThresholds(high_enter=0.8, high_exit=0.7).medium_enter
    0.4
    """

    high_enter: float = 0.7
    high_exit: float = 0.6
    medium_enter: float = 0.4
    medium_exit: float = 0.3

    def __post_init__(self) -> None:
        if not (
            0.0 <= self.medium_exit <= self.medium_enter <= self.high_enter <= 1.0
            and self.medium_exit <= self.high_exit <= self.high_enter
        ):
            raise ValueError(
                "need 0 <= medium_exit <= medium_enter <= high_enter <= 1 "
                "and medium_exit <= high_exit <= high_enter"
            )


DEFAULT_THRESHOLDS = LevelThresholds()


def level_thresholds(medium: float, high: float, band: float = 0.1) -> LevelThresholds:
    """Thresholds entering ``medium`` and ``high`` at these scores, leaving ``band`` lower.

    >>> level_thresholds(0.4, 0.7) == DEFAULT_THRESHOLDS
    True
    >>> level_thresholds(0.05, 0.3)
    LevelThresholds(high_enter=0.3, high_exit=0.2, medium_enter=0.05, medium_exit=0.0)
    """
    if not 0.0 < medium < high < 1.0:
        raise ValueError(f"need 0 < medium < high < 1, got medium={medium}, high={high}")
    return LevelThresholds(
        high_enter=high,
        high_exit=round(max(high - band, medium), 10),
        medium_enter=medium,
        medium_exit=round(max(medium - band, 0.0), 10),
    )


def churn_level(
    score: float,
    previous_level: str | None,
    thresholds: LevelThresholds = DEFAULT_THRESHOLDS,
) -> str:
    """Churn level of ``score`` given the previous level, with hysteresis.

    Moving *up* needs the enter threshold of the new level; staying needs only
    its exit threshold, so a score that wobbles inside a band keeps its level.
    A customer leaving ``high`` lands in ``medium`` unless the score is also
    below ``medium_exit``. ``previous_level=None`` (first score) acts as ``low``.

    Examples
    --------
    >>> churn_level(0.65, "low"), churn_level(0.65, "high"), churn_level(0.55, "high")
    ('medium', 'high', 'medium')
    >>> churn_level(0.35, "medium"), churn_level(0.25, "high"), churn_level(0.72, None)
    ('medium', 'low', 'high')
    """
    if previous_level is not None and previous_level not in LEVELS:
        raise ValueError(f"unknown churn level {previous_level!r}")
    t = thresholds
    if score >= t.high_enter:
        up = 2
    elif score >= t.medium_enter:
        up = 1
    else:
        up = 0
    prev = 0 if previous_level is None else LEVELS.index(previous_level)
    if up > prev:
        return LEVELS[up]
    if prev == 2 and score >= t.high_exit:
        return "high"
    if prev >= 1 and score >= t.medium_exit:
        return "medium"
    return "low"


# ---------------------------------------------------------------- evaluation
def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    Raises ``ValueError`` when only one class is present.

    Examples
    --------
    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    >>> roc_auc([0.5, 0.5], [0, 1])
    0.5
    """
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError("scores and labels must have the same length")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs both classes")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=float)
    # Average rank for each run of tied scores.
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1..end
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def precision_at_top(scores: ArrayLike, labels: ArrayLike, fraction: float = 0.1) -> float:
    """Share of positives among the ``ceil(fraction * n)`` highest scores.

    The retention team's view: if they call the top 10 % of the ranking, how
    many calls reach a real churner? Ties at the cut are broken by position
    (stable sort), so the result is deterministic.

    Examples
    --------
    >>> precision_at_top([0.9, 0.8, 0.1, 0.2, 0.7], [1, 0, 0, 0, 1], fraction=0.4)
    0.5
    """
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape or s.size == 0:
        raise ValueError("scores and labels must be non-empty and of the same length")
    k = max(1, math.ceil(fraction * s.size - 1e-9))
    top = np.argsort(-s, kind="mergesort")[:k]
    return float(y[top].mean())


def recency_baseline_score(features: Mapping[str, Any], scale_days: float = 30.0) -> float:
    """Recency-only baseline: ``d / (d + scale_days)``, ``d = days_since_last_event``.

    Monotone in the days of silence (so its ROC AUC is that of the raw
    recency), in ``[0, 1)``; 0.5 when the recency is unknown.

    Examples
    --------
    >>> recency_baseline_score({"days_since_last_event": 30})
    0.5
    >>> recency_baseline_score({"days_since_last_event": 0})
    0.0
    """
    d = _num(features, "days_since_last_event")
    if d is None:
        return 0.5
    d = max(d, 0.0)
    return d / (d + scale_days)
