"""The churn model the workers score with: BTYD quantities plus behaviour, learned online.

``score = P(no purchase -- or, configurably, no activity -- in the next H days)``
as a logistic function of eight features, each a number in ``[0, 1]`` oriented
so that a larger value means more risk:

=========================  ==============================================  =======
feature                    value                                           prior
=========================  ==============================================  =======
``not_alive``              1 - P(alive), mean of BG/NBD and Pareto/NBD      2.0
``inactivity``             silence relative to the customer's own rhythm    3.0
``engagement_decline``     activity in the last 30 days vs the 60 before    1.5
``support``                rise of tickets over the customer's own rate     2.0
``sentiment``              NPS drop, chronic dissatisfaction                1.5
``low_expected_purchases`` ``1 / (1 + E)``, ``E`` = expected purchases in   0
                           the next H days (mean of the two BTYD models)
``few_repeat_purchases``   ``1 / (1 + frequency)``                          0
``never_bought``           1 for a customer without a purchase              0
=========================  ==============================================  =======

The first five are :class:`models.churn.ChurnScorer`'s factors (see
``docs/churn.md``); the prior weights and bias (-3) are its hand-set ones, so
until enough outcomes have matured the score is exactly the hand-set score.
:class:`OnlineChurnLearner` then learns the weights from delayed outcomes
(a river logistic regression warm-started at the prior). BG/NBD and Pareto/NBD
are fitted on the whole base's summary table (:func:`fit_btyd`).

Everything here is plain JSON in and out (``to_dict``/``from_dict``): the
model is published on the ``segment-models`` topic as data, never pickled.

Examples
--------
>>> model = ChurnModel()
>>> feats = {"frequency": 4, "recency": 100, "T": 250, "orders": 5,
...          "days_since_last_event": 150, "days_since_last_purchase": 150}
>>> r = model.score(feats)
>>> round(r.score, 3), r.reasons[0]
(0.611, 'no activity for 150 days (usually every 25 days)')
>>> sorted(r.values)[:3]
['engagement_decline', 'few_repeat_purchases', 'inactivity']
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import linalg, special

from models.btyd import DEFAULT_PARAMS, BGNBDParams, fit_bgnbd, prob_alive
from models.btyd_summary import BTYDSummary
from models.churn import (
    DEFAULT_BIAS,
    DEFAULT_WEIGHTS,
    ChurnScore,
    ChurnScorer,
    roc_auc,
)
from models.pareto_nbd import ParetoNBDParams, fit_pareto_nbd

__all__ = [
    "FEATURES",
    "LABELS",
    "PRIOR_WEIGHTS",
    "BTYDFit",
    "ChurnModel",
    "OnlineChurnLearner",
    "fit_btyd",
]

#: Feature names, in the order of a snapshot vector.
FEATURES: tuple[str, ...] = (
    "not_alive",
    "inactivity",
    "engagement_decline",
    "support",
    "sentiment",
    "low_expected_purchases",
    "few_repeat_purchases",
    "never_bought",
)

#: Today's hand-set weights for the scorer's factors; 0 for the new features.
PRIOR_WEIGHTS: dict[str, float] = {
    **DEFAULT_WEIGHTS,
    "low_expected_purchases": 0.0,
    "few_repeat_purchases": 0.0,
    "never_bought": 0.0,
}

#: What "churned" means for the label: no purchase, or no behavioural event.
LABELS: tuple[str, ...] = ("purchase", "activity")

_CACHE_LIMIT = 200_000


def _num(features: Mapping[str, Any], key: str) -> float | None:
    value = features.get(key)
    if value is None or isinstance(value, str | bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _pareto_alive_expected(
    p: ParetoNBDParams,
    x: float,
    t_x: float,
    big_t: float,
    t: float,
    p_alive: float | None = None,
) -> tuple[float, float]:
    """Scalar Pareto/NBD ``(P(alive), E[purchases in t])`` (math + two hyp2f1 calls).

    ``p_alive``: P(alive) already computed for this summary (another horizon):
    only the expectation is computed, without a hyp2f1 call.
    """
    r, alpha, s, beta = p.r, p.alpha, p.s, p.beta
    if p_alive is None:
        p_alive = _pareto_alive(p, x, t_x, big_t)
    ratio = (beta + big_t) / (beta + big_t + t)
    part = -math.log(ratio) if abs(s - 1.0) < 1e-8 else (1.0 - ratio ** (s - 1.0)) / (s - 1.0)
    expected = p_alive * (r + x) * (beta + big_t) / (alpha + big_t) * part
    return p_alive, expected


def _pareto_alive(p: ParetoNBDParams, x: float, t_x: float, big_t: float) -> float:
    """Scalar Pareto/NBD P(alive) (two hyp2f1 calls)."""
    r, alpha, s, beta = p.r, p.alpha, p.s, p.beta
    if alpha < beta:
        big, small, second = beta, alpha, r + x
    else:
        big, small, second = alpha, beta, s + 1.0
    rsx = r + s + x
    q1, q2 = big + t_x, big + big_t
    log_alive = -(r + x) * math.log(alpha + big_t) - s * math.log(beta + big_t)
    first = math.log(float(special.hyp2f1(rsx, second, rsx + 1.0, (big - small) / q1)))
    first -= rsx * math.log(q1)
    later = math.log(float(special.hyp2f1(rsx, second, rsx + 1.0, (big - small) / q2)))
    later -= rsx * math.log(q2)
    if later < first:
        log_dead = math.log(s) + first + math.log1p(-math.exp(later - first)) - math.log(rsx)
        z = log_alive - log_dead
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
    return 1.0


def _bgnbd_alive_expected(
    p: BGNBDParams,
    x: float,
    t_x: float,
    big_t: float,
    t: float,
    p_alive: float | None = None,
) -> tuple[float, float]:
    """Scalar BG/NBD ``(P(alive), E[purchases in t])``.

    The closed form's Gauss hypergeometric term is not computable for
    near-degenerate fits (a Gamma shape ``r`` in the tens of thousands: scipy
    returns nan); the same expectation is then integrated numerically
    (:func:`_bgnbd_expected_alive_quadrature`). ``p_alive``: already computed
    for this summary (another horizon).
    """
    if p_alive is None:
        p_alive = prob_alive(x, t_x, big_t, p)
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    hyp = float(special.hyp2f1(r + x, b + x, a + b + x - 1.0, t / (alpha + big_t + t)))
    first = (a + b + x - 1.0) / (a - 1.0)
    second = 1.0 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp
    expected = first * second
    if not math.isfinite(expected):
        expected = _bgnbd_expected_alive_quadrature(p, x, big_t, t)
    return p_alive, max(expected * p_alive, 0.0)


@functools.lru_cache(maxsize=4096)
def _beta_nodes(n: int, a: float, b: float) -> tuple[Any, Any]:
    """``n``-point Gauss quadrature of the ``Beta(a, b)`` distribution: nodes, weights.

    Golub-Welsch on the Jacobi recurrence (eigenvalues of a tridiagonal
    matrix; the weights are the squared first eigenvector components, so they
    never overflow, unlike ``scipy.special.roots_jacobi`` for ``b`` in the
    thousands).

    >>> nodes, weights = _beta_nodes(8, 2.0, 3.0)
    >>> round(float(weights @ nodes), 12), round(float(weights.sum()), 12)  # mean 2/5
    (0.4, 1.0)
    """
    al, be = b - 1.0, a - 1.0  # Jacobi weight (1 - u)^al (1 + u)^be on [-1, 1]
    k = np.arange(n, dtype=float)
    s = 2.0 * k + al + be
    with np.errstate(all="ignore"):
        diagonal = (be**2 - al**2) / (s * (s + 2.0))
    diagonal[0] = (be - al) / (al + be + 2.0)
    m = np.arange(1, n, dtype=float)
    sm = 2.0 * m + al + be
    with np.errstate(all="ignore"):
        off2 = 4.0 * m * (m + al) * (m + be) * (m + al + be) / (sm**2 * (sm + 1.0) * (sm - 1.0))
    off2[0] = 4.0 * (1.0 + al) * (1.0 + be) / ((2.0 + al + be) ** 2 * (3.0 + al + be))
    u, vectors = linalg.eigh_tridiagonal(diagonal, np.sqrt(off2))
    weights = vectors[0] ** 2
    return (1.0 + u) / 2.0, weights / weights.sum()


def _bgnbd_expected_alive_quadrature(p: BGNBDParams, x: float, big_t: float, t: float) -> float:
    """BG/NBD ``E[purchases in t | alive]`` as a one-dimensional integral.

    Alive after ``x`` repeat purchases in ``T``, the rate is
    ``Gamma(r + x, alpha + T)`` and the dropout probability ``Beta(a, b + x)``;
    a customer with ``(lambda, p)`` buys ``(1 - exp(-lambda p t)) / p`` times in
    expectation before dropping out. Integrating over ``lambda`` in closed form
    leaves ``E_p[(1 - (1 + p t / (alpha + T))^-(r + x)) / p]``, a smooth
    function of ``p`` against a Beta weight: 64-node Gauss quadrature
    agrees with the closed form to 1e-5 wherever both are computable.

    >>> from models.btyd import DEFAULT_PARAMS
    >>> x, tx, big_t = 3.0, 40.0, 90.0
    >>> _, closed = _bgnbd_alive_expected(DEFAULT_PARAMS, x, tx, big_t, 365.0)
    >>> integral = _bgnbd_expected_alive_quadrature(DEFAULT_PARAMS, x, big_t, 365.0)
    >>> alive = prob_alive(x, tx, big_t, DEFAULT_PARAMS)
    >>> abs(integral * alive / closed - 1) < 1e-5
    True
    """
    nodes, weights = _beta_nodes(64, p.a, p.b + x)
    k, s = p.r + x, t / (p.alpha + big_t)
    values = -np.expm1(-k * np.log1p(nodes * s)) / nodes
    return float(np.dot(weights, values))


@dataclass(frozen=True)
class BTYDFit:
    """BG/NBD and (when fitted) Pareto/NBD parameters of the whole base, in days.

    The per-customer quantities are the mean of the two models (a simple
    ensemble: on real data neither model wins everywhere, and their mean
    ranks at least as well as the better one in our evaluations); with only
    BG/NBD (before the first fit: the published CDNOW estimates) it is
    BG/NBD's alone.

    Examples
    --------
    >>> fit = BTYDFit()
    >>> p_alive, expected = fit.quantities(2, 30, 60, 90)
    >>> round(p_alive, 3), round(expected, 3)
    (0.638, 1.165)
    """

    bgnbd: BGNBDParams = DEFAULT_PARAMS
    pareto: ParetoNBDParams | None = None
    day: int | None = None  # stream day of the fit (None: defaults)
    n_customers: int = 0
    rows: int = 0
    _cache: dict[tuple[float, float, float, float], tuple[float, float]] = field(
        default_factory=dict, repr=False, compare=False
    )
    # (x, t_x, T) -> P(alive) of each model: shared by the horizons asked for (the
    # churn score's H and the CLV's 365 days)
    _alive: dict[tuple[float, float, float], tuple[float, float | None]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def version(self) -> str:
        """``default`` before the first fit, else ``d<stream day>``."""
        return "default" if self.day is None else f"d{self.day}"

    def quantities(self, x: float, t_x: float, big_t: float, horizon: float) -> tuple[float, float]:
        """``(P(alive), expected purchases in the next horizon days)`` of one customer.

        Memoised per fit: on any day many customers share a summary. P(alive)
        (most of the cost) is remembered per summary, so a second horizon of
        the same customer (the CLV's, after the churn score's) costs one
        hypergeometric term.
        """
        key = (x, t_x, big_t, horizon)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        t_x = min(max(t_x, 0.0), big_t)
        summary = (x, t_x, big_t)
        known = self._alive.get(summary)
        bg_alive, pn_alive = known if known is not None else (None, None)
        bg_alive, expected = _bgnbd_alive_expected(
            self.bgnbd, x, t_x, big_t, horizon, p_alive=bg_alive
        )
        alive = bg_alive
        if self.pareto is not None:
            pn_alive, p_expected = _pareto_alive_expected(
                self.pareto, x, t_x, big_t, horizon, p_alive=pn_alive
            )
            alive, expected = (bg_alive + pn_alive) / 2.0, (expected + p_expected) / 2.0
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
            self._alive.clear()
        self._cache[key] = (alive, expected)
        if known is None:
            self._alive[summary] = (bg_alive, pn_alive)
        return alive, expected

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "bgnbd": self.bgnbd.to_dict(),
            "pareto": None if self.pareto is None else self.pareto.to_dict(),
            "day": self.day,
            "n_customers": self.n_customers,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BTYDFit:
        """Inverse of :meth:`to_dict`."""
        pareto = data.get("pareto")
        day = data.get("day")
        return cls(
            bgnbd=BGNBDParams.from_dict(data["bgnbd"]),
            pareto=None if pareto is None else ParetoNBDParams.from_dict(pareto),
            day=None if day is None else int(day),
            n_customers=int(data.get("n_customers", 0)),
            rows=int(data.get("rows", 0)),
        )


def fit_btyd(
    summary: BTYDSummary,
    day: int,
    previous: BTYDFit | None = None,
    *,
    min_customers: int = 200,
    penalizer: float = 0.0,
) -> BTYDFit | None:
    """Fit both models on the summary table as of ``day``; ``None`` if too few customers.

    Warm-started from ``previous`` (a weekly refit moves little). A model
    whose fit fails keeps its previous parameters.

    Examples
    --------
    >>> from models.btyd import simulate_bgnbd
    >>> x, tx, t = simulate_bgnbd(2000, 300.0, seed=4)
    >>> s = BTYDSummary()
    >>> for xi, txi, ti in zip(x, tx, t):
    ...     s.add(int(xi), int(txi), 1000 - int(ti))
    >>> fit = fit_btyd(s, 1000)
    >>> fit.n_customers, fit.pareto is not None, fit.version
    (2000, True, 'd1000')
    """
    x, t_x, big_t, weights = summary.table(day)
    n = int(weights.sum()) if weights.size else 0
    if n < min_customers:
        return None
    prev = previous or BTYDFit()
    version = f"d{day}"
    try:
        bg = fit_bgnbd(
            x,
            t_x,
            big_t,
            weights,
            initial=prev.bgnbd if prev.day is not None else None,
            penalizer=penalizer,
            version=version,
        )
    except (ValueError, FloatingPointError, OverflowError):
        bg = prev.bgnbd
    try:
        with np.errstate(all="ignore"):
            pareto: ParetoNBDParams | None = fit_pareto_nbd(
                x, t_x, big_t, weights, initial=prev.pareto, penalizer=penalizer, version=version
            )
    except (ValueError, FloatingPointError, OverflowError):
        pareto = prev.pareto
    return BTYDFit(bgnbd=bg, pareto=pareto, day=day, n_customers=n, rows=int(x.size))


def _plural(n: float, word: str) -> str:
    k = round(n)
    return f"{k} {word}" if k == 1 else f"{k} {word}s"


class ChurnModel:
    """The published churn model: weights over :data:`FEATURES`, bias, BTYD fit.

    Parameters
    ----------
    weights
        Log-odds weight per feature (missing: :data:`PRIOR_WEIGHTS`).
    bias
        Intercept (log-odds).
    btyd
        The BTYD fit (default: BG/NBD at the CDNOW estimates).
    horizon_days
        H: the score is the probability of no purchase (or activity) in the
        next H days of stream time.
    label
        ``"purchase"`` or ``"activity"``: what the outcome counts.
    offset_days
        The outcome window starts this many days after the score: the score
        is the probability of no purchase (or activity) in
        ``[now + offset_days, now + offset_days + H)``. 0 (the default) asks
        "will the customer not buy in the next H days?"; ``offset_days = H``
        asks "will the customer have stopped within H days (and stay silent
        H days)?", the question a retention team acting ahead of the silence
        asks.
    revision
        The learner's publication counter (0: the prior, never published).
    learned
        Whether the weights were learned from outcomes (else the prior).
    validation
        Progressive validation of the learner when published (AUC, Brier...).
    scorer
        Computes the five behavioural factors and their reason texts.

    Examples
    --------
    >>> m = ChurnModel(horizon_days=30, label="activity")
    >>> ChurnModel.from_dict(m.to_dict()).to_dict() == m.to_dict()
    True
    >>> m.version_label
    'churn-prior+btyd-default'
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        bias: float = DEFAULT_BIAS,
        btyd: BTYDFit | None = None,
        horizon_days: int = 90,
        label: str = "purchase",
        offset_days: int = 0,
        revision: int = 0,
        learned: bool = False,
        validation: Mapping[str, Any] | None = None,
        scorer: ChurnScorer | None = None,
    ) -> None:
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {label!r}")
        if horizon_days < 1:
            raise ValueError("horizon_days must be >= 1")
        if offset_days < 0:
            raise ValueError("offset_days must be >= 0")
        merged = dict(PRIOR_WEIGHTS)
        if weights is not None:
            unknown = set(weights) - set(FEATURES)
            if unknown:
                raise ValueError(f"unknown churn features: {sorted(unknown)}")
            merged.update({k: float(v) for k, v in weights.items()})
        self.weights = merged
        self.bias = float(bias)
        self.btyd = BTYDFit() if btyd is None else btyd
        self.horizon_days = int(horizon_days)
        self.label = label
        self.offset_days = int(offset_days)
        self.revision = int(revision)
        self.learned = bool(learned)
        self.validation = dict(validation or {})
        self.scorer = ChurnScorer() if scorer is None else scorer

    def __repr__(self) -> str:
        return (
            f"ChurnModel(revision={self.revision}, learned={self.learned}, "
            f"horizon_days={self.horizon_days}, label={self.label!r}, "
            f"offset_days={self.offset_days}, btyd={self.btyd.version})"
        )

    @property
    def question(self) -> tuple[int, str, int]:
        """``(H, label, offset)``: what the score is the probability of."""
        return (self.horizon_days, self.label, self.offset_days)

    @property
    def version_label(self) -> str:
        """The ``model_version`` of churn-risk events scored with this model."""
        rev = "prior" if self.revision == 0 else f"r{self.revision}"
        return f"churn-{rev}+btyd-{self.btyd.version}"

    # ----------------------------------------------------------- features
    def evaluate(self, features: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
        """Feature values (every name of :data:`FEATURES`) and the numbers reasons need."""
        freq = _num(features, "frequency")
        big_t = _num(features, "T")
        orders = _num(features, "orders")
        buyer = freq is not None and big_t is not None and (orders is None or orders > 0)
        p_alive = None
        expected = None
        if buyer:
            assert freq is not None and big_t is not None
            rec = _num(features, "recency") or 0.0
            p_alive, expected = self.btyd.quantities(freq, rec, big_t, float(self.horizon_days))
        values, ctx = self.scorer.evaluate_factors(features, None, p_alive=p_alive)
        if buyer:
            assert freq is not None and expected is not None
            values["low_expected_purchases"] = 1.0 / (1.0 + expected)
            values["few_repeat_purchases"] = 1.0 / (1.0 + max(freq, 0.0))
            values["never_bought"] = 0.0
            ctx["expected"], ctx["frequency"] = expected, freq
        else:
            values["never_bought"] = 1.0
            values["low_expected_purchases"] = values["few_repeat_purchases"] = 0.0
            values.setdefault("not_alive", 0.0)
        for name in FEATURES:
            values.setdefault(name, 0.0)
        return values, ctx

    def vector(self, features: Mapping[str, Any]) -> list[float]:
        """The feature values in :data:`FEATURES` order (a snapshot)."""
        values, _ = self.evaluate(features)
        return [values[name] for name in FEATURES]

    def _reason(self, name: str, ctx: Mapping[str, Any]) -> str | None:
        if name == "low_expected_purchases":
            expected = ctx["expected"]
            if expected < 0.05:
                return f"not expected to buy in the next {_plural(self.horizon_days, 'day')}"
            return (
                f"expected to buy only {expected:.1f} times in the next "
                f"{_plural(self.horizon_days, 'day')}"
            )
        if name == "few_repeat_purchases":
            days = round(ctx["frequency"]) + 1
            return "bought on one day only" if days == 1 else f"bought on only {days} days"
        if name == "never_bought":
            return "has never bought"
        return ChurnScorer.reason_text(name, ctx)

    # -------------------------------------------------------------- score
    def score(self, features: Mapping[str, Any], explain: bool = True) -> ChurnScore:
        """Churn risk of one customer: probability, contributions, reasons, values.

        ``explain=False`` skips the reason texts (``reasons`` is empty): the
        worker builds them only when a level changes.

        Examples
        --------
        >>> m = ChurnModel(weights={"never_bought": 1.0})
        >>> r = m.score({"days_since_last_event": 3, "active_days_30d": 9})
        >>> round(r.score, 3), r.factors[0], r.reasons
        (0.119, ('never_bought', 1.0), ['has never bought'])
        """
        values, ctx = self.evaluate(features)
        z = self.bias
        contributions = []
        for name in FEATURES:
            c = self.weights[name] * values[name]
            z += c
            if values[name] or name in ("inactivity", "engagement_decline"):
                contributions.append((name, c))
        contributions.sort(key=lambda item: -item[1])
        score = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
        reasons: list[str] = []
        if not explain:
            return ChurnScore(score=score, factors=contributions, reasons=reasons, values=values)
        scorer = self.scorer
        for name, c in contributions[: scorer.max_reasons]:
            if c >= scorer.min_reason_contribution:
                text = self._reason(name, ctx)
                if text:
                    reasons.append(text)
        if not reasons:
            reasons = ["no strong churn signals"]
        return ChurnScore(score=score, factors=contributions, reasons=reasons, values=values)

    def probability(self, vector: list[float]) -> float:
        """The score of a snapshot vector (in :data:`FEATURES` order)."""
        z = self.bias + sum(self.weights[n] * v for n, v in zip(FEATURES, vector, strict=True))
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    # ------------------------------------------------------------ persist
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (numbers, strings, lists, dicts): the published form."""
        return {
            "format": 1,
            "revision": self.revision,
            "version": self.version_label,
            "learned": self.learned,
            "horizon_days": self.horizon_days,
            "label": self.label,
            "offset_days": self.offset_days,
            "features": list(FEATURES),
            "weights": dict(self.weights),
            "bias": self.bias,
            "btyd": self.btyd.to_dict(),
            "validation": dict(self.validation),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], scorer: ChurnScorer | None = None) -> ChurnModel:
        """Inverse of :meth:`to_dict` (raises ``ValueError`` on an unknown format)."""
        if int(data.get("format", 0)) != 1:
            raise ValueError(f"unknown churn model format {data.get('format')!r}")
        weights = {k: float(v) for k, v in data["weights"].items() if k in FEATURES}
        return cls(
            weights=weights,
            bias=float(data["bias"]),
            btyd=BTYDFit.from_dict(data["btyd"]),
            horizon_days=int(data["horizon_days"]),
            label=str(data["label"]),
            offset_days=int(data.get("offset_days", 0)),
            revision=int(data.get("revision", 0)),
            learned=bool(data.get("learned", False)),
            validation=data.get("validation") or {},
            scorer=scorer,
        )

    def digest(self) -> str:
        """A short hash of the weights (for logs and tests)."""
        blob = repr((sorted(self.weights.items()), self.bias)).encode()
        return hashlib.sha256(blob).hexdigest()[:8]


class OnlineChurnLearner:
    """Bayesian logistic regression on delayed outcomes, centred on the prior weights.

    The weights and bias have a Gaussian posterior, kept as its mean and
    precision matrix (9 numbers and 9 x 9: plain JSON, deterministic, exactly
    restorable; no seed is involved). It starts at the prior: the hand-set
    weights with standard deviation ``prior_sd`` (log-odds per unit of
    feature) and the prior bias with ``bias_sd`` (the hand-set bias is not a
    calibrated intercept for any question). Each outcome updates it with a
    Laplace step (the extended Kalman filter of logistic regression: a Newton
    step weighted by the current uncertainty), so a handful of outcomes per
    weight already moves it where a full batch fit would go -- plain SGD with
    a constant step had not converged after 40,000 outcomes on the simulator
    (``docs/churn.md``). Before each update the posterior is flattened towards
    the prior (stabilised forgetting: precision ``lam * P + (1 - lam) * P0``,
    ``lam = 1 - 1 / memory``), so the model follows a drifting base with an
    effective memory of about ``memory`` outcomes, and a feature that never
    varies (support on a purchase-only history) stays at its prior instead of
    drifting.

    Every outcome is first predicted, then learnt: progressive validation over
    the last ``window`` outcomes gives the AUC and Brier score published with
    the model. Until ``min_labels`` outcomes have been learnt, :meth:`ready` is
    false and the workers keep scoring with the prior.

    A challenger is learnt from the same outcomes: the prior's own ranking,
    recalibrated (``a + b * prior logit``, two parameters, the same Laplace
    steps). Where the outcomes are few or noisy, nine free weights can rank
    worse than the hand-set ones they started from; the challenger keeps the
    hand-set ranking and still gives a calibrated probability. What is
    published (:meth:`published`) is whichever predicted the outcomes better:
    lower progressive log loss, exponentially weighted over about ``window``
    outcomes, the current choice kept unless the other is better by
    ``switch_margin`` (relative), so the published score does not flip back
    and forth. The recalibrated prior is the first choice.

    Parameters
    ----------
    prior_sd
        Prior standard deviation of each feature weight around its prior value.
    bias_sd
        Prior standard deviation of the bias.
    memory
        Effective number of recent outcomes the posterior remembers.
    min_labels
        Outcomes learnt before the learned weights are used.
    window
        Outcomes kept for the progressive AUC and Brier score, and the memory of
        the log losses that choose the published model.
    switch_margin
        Relative log-loss advantage the other model needs to replace the one
        published.
    weights, bias
        The prior mean (default: the hand-set weights and bias).

    Examples
    --------
    >>> learner = OnlineChurnLearner(min_labels=2)
    >>> silent = [0.9, 0.9, 0.5, 0.0, 0.0, 0.9, 1.0, 0.0]
    >>> busy = [0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.1, 0.0]
    >>> for _ in range(200):
    ...     _ = learner.learn_one(silent, True)
    ...     _ = learner.learn_one(busy, False)
    >>> learner.ready, round(learner.validation()["auc"], 2)
    (True, 1.0)
    >>> round(learner.predict_one(silent), 2), round(learner.predict_one(busy), 2)
    (0.99, 0.01)
    >>> OnlineChurnLearner.from_dict(learner.to_dict()).weights == learner.weights
    True

    Here the hand-set weights rank these two perfectly too, so their
    recalibration is as good and, being first, stays published:

    >>> learner.selected, round(learner.validation()["log_loss"]["prior"], 3)
    ('prior', 0.008)
    """

    def __init__(
        self,
        prior_sd: float = 1.0,
        bias_sd: float = 5.0,
        memory: int = 50_000,
        min_labels: int = 2000,
        window: int = 20_000,
        switch_margin: float = 0.002,
        weights: Mapping[str, float] | None = None,
        bias: float = DEFAULT_BIAS,
    ) -> None:
        if prior_sd <= 0 or bias_sd <= 0:
            raise ValueError("prior_sd and bias_sd must be > 0")
        if memory < 2 or window < 1:
            raise ValueError("memory must be >= 2 and window >= 1")
        if not 0 <= switch_margin < 1:
            raise ValueError("switch_margin must be in [0, 1)")
        self.prior_sd = float(prior_sd)
        self.bias_sd = float(bias_sd)
        self.memory = int(memory)
        self.min_labels = int(min_labels)
        self.window = int(window)
        self.switch_margin = float(switch_margin)
        self.n_labels = 0
        self.n_churned = 0
        start = dict(PRIOR_WEIGHTS)
        if weights is not None:
            start.update({k: float(v) for k, v in weights.items() if k in FEATURES})
        # index 0 is the bias, then the features in FEATURES order
        self._mean0 = np.array([float(bias), *(start[n] for n in FEATURES)])
        self._precision0 = np.diag([self.bias_sd**-2] + [self.prior_sd**-2] * len(FEATURES))
        self._info0 = self._precision0 @ self._mean0
        self.mean = self._mean0.copy()
        self.precision = self._precision0.copy()
        self._lam = 1.0 - 1.0 / self.memory
        # the challenger: (a, b) of a + b * prior logit, centred on "as is"
        self._cal_mean0 = np.array([0.0, 1.0])
        self._cal_precision0 = np.diag([self.bias_sd**-2, self.prior_sd**-2])
        self._cal_info0 = self._cal_precision0 @ self._cal_mean0
        self.cal_mean = self._cal_mean0.copy()
        self.cal_precision = self._cal_precision0.copy()
        # exponentially weighted log-loss sums of both models, and their weight
        self.loss = {"learned": 0.0, "prior": 0.0}
        self.loss_weight = 0.0
        self.selected = "prior"
        self._recent: deque[tuple[float, float, bool]] = deque(maxlen=self.window)

    @property
    def ready(self) -> bool:
        """Whether enough outcomes were learnt to publish the learned weights."""
        return self.n_labels >= self.min_labels

    @property
    def weights(self) -> dict[str, float]:
        """Posterior mean of the feature weights."""
        return {name: float(w) for name, w in zip(FEATURES, self.mean[1:], strict=True)}

    @property
    def bias(self) -> float:
        """Posterior mean of the bias."""
        return float(self.mean[0])

    def predict_one(self, vector: list[float]) -> float:
        """Probability of the outcome for one feature vector (posterior mean weights)."""
        return _sigmoid(float(self.mean[0] + np.dot(self.mean[1:], vector)))

    def prior_logit(self, vector: list[float]) -> float:
        """The prior's (hand-set) log-odds for one feature vector."""
        return float(self._mean0[0] + np.dot(self._mean0[1:], vector))

    def predict_prior_one(self, vector: list[float]) -> float:
        """Probability of the outcome by the recalibrated prior (the challenger)."""
        return _sigmoid(float(self.cal_mean[0] + self.cal_mean[1] * self.prior_logit(vector)))

    def learn_one(self, vector: list[float], churned: bool) -> float:
        """Predict, then learn one outcome; return the learned model's prediction before it."""
        y = bool(churned)
        p = self.predict_one(vector)
        p_prior = self.predict_prior_one(vector)
        self._recent.append((p, p_prior, y))
        self._score(p, p_prior, y)
        x = np.empty(len(FEATURES) + 1)
        x[0] = 1.0
        x[1:] = vector
        self.mean, self.precision = _laplace_step(
            self.mean, self.precision, self._precision0, self._info0, self._lam, x, y
        )
        x_cal = np.array([1.0, self.prior_logit(vector)])
        self.cal_mean, self.cal_precision = _laplace_step(
            self.cal_mean, self.cal_precision, self._cal_precision0, self._cal_info0, self._lam,
            x_cal, y,
        )  # fmt: skip
        self.n_labels += 1
        self.n_churned += int(y)
        return p

    def _score(self, p: float, p_prior: float, y: bool) -> None:
        """Add one outcome to both models' log losses and revisit the choice."""
        decay = 1.0 - 1.0 / self.window
        self.loss_weight = decay * self.loss_weight + 1.0
        for name, q in (("learned", p), ("prior", p_prior)):
            self.loss[name] = decay * self.loss[name] + _log_loss(q, y)
        other = "learned" if self.selected == "prior" else "prior"
        if self.loss[other] < self.loss[self.selected] * (1.0 - self.switch_margin):
            self.selected = other

    def published(self) -> tuple[dict[str, float], float]:
        """Weights and bias of the selected model (the challenger's are the prior's, scaled)."""
        if self.selected == "learned":
            return self.weights, self.bias
        a, b = (float(v) for v in self.cal_mean)
        weights = {n: b * float(w) for n, w in zip(FEATURES, self._mean0[1:], strict=True)}
        return weights, a + b * float(self._mean0[0])

    def uncertainty(self) -> dict[str, float]:
        """Posterior standard deviation of each weight (and ``bias``)."""
        sd = np.sqrt(np.diag(np.linalg.inv(self.precision)))
        return {
            "bias": float(sd[0]),
            **{n: float(v) for n, v in zip(FEATURES, sd[1:], strict=True)},
        }

    def validation(self) -> dict[str, Any]:
        """Progressive validation over the last ``window`` outcomes.

        ``auc``, ``brier`` and ``mean_score`` are the selected model's (the one
        published); ``auc_by_model`` and ``log_loss`` compare the two.
        """
        out: dict[str, Any] = {
            "labels": self.n_labels,
            "window": len(self._recent),
            "selected": self.selected,
        }
        if self.loss_weight:
            out["log_loss"] = {n: round(v / self.loss_weight, 5) for n, v in self.loss.items()}
        if not self._recent:
            return out
        n = len(self._recent)
        learned = np.fromiter((q for q, _, _ in self._recent), float, n)
        prior = np.fromiter((q for _, q, _ in self._recent), float, n)
        y = np.fromiter((c for _, _, c in self._recent), bool, n)
        p = learned if self.selected == "learned" else prior
        out["brier"] = round(float(np.mean((p - y) ** 2)), 5)
        out["base_rate"] = round(float(y.mean()), 5)
        out["mean_score"] = round(float(p.mean()), 5)
        if y.any() and not y.all():
            out["auc"] = round(roc_auc(p, y), 5)
            out["auc_by_model"] = {
                "learned": round(roc_auc(learned, y), 5),
                "prior": round(roc_auc(prior, y), 5),
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON state (the validation window is not kept)."""
        return {
            "format": 3,
            "prior_sd": self.prior_sd,
            "bias_sd": self.bias_sd,
            "memory": self.memory,
            "min_labels": self.min_labels,
            "window": self.window,
            "prior_weights": {n: float(v) for n, v in zip(FEATURES, self._mean0[1:], strict=True)},
            "prior_bias": float(self._mean0[0]),
            "mean": [float(v) for v in self.mean],
            "precision": [[float(v) for v in row] for row in self.precision],
            "n_labels": self.n_labels,
            "n_churned": self.n_churned,
            "switch_margin": self.switch_margin,
            "calibration_mean": [float(v) for v in self.cal_mean],
            "calibration_precision": [[float(v) for v in row] for row in self.cal_precision],
            "loss": dict(self.loss),
            "loss_weight": self.loss_weight,
            "selected": self.selected,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OnlineChurnLearner:
        """Inverse of :meth:`to_dict` (raises ``ValueError`` on an unknown format).

        A format-2 state (before the challenger) resumes with the learned model
        selected, as it was published, and a fresh challenger.
        """
        fmt = int(data.get("format", 0))
        if fmt not in (2, 3):
            raise ValueError(f"unknown churn learner format {data.get('format')!r}")
        learner = cls(
            prior_sd=float(data["prior_sd"]),
            bias_sd=float(data["bias_sd"]),
            memory=int(data["memory"]),
            min_labels=int(data["min_labels"]),
            window=int(data["window"]),
            switch_margin=float(data.get("switch_margin", 0.002)),
            weights=data["prior_weights"],
            bias=float(data["prior_bias"]),
        )
        learner.mean = _array(data["mean"], (len(FEATURES) + 1,))
        learner.precision = _array(data["precision"], (len(FEATURES) + 1,) * 2)
        learner.n_labels = int(data.get("n_labels", 0))
        learner.n_churned = int(data.get("n_churned", 0))
        if fmt == 2:
            learner.selected = "learned"
            return learner
        learner.cal_mean = _array(data["calibration_mean"], (2,))
        learner.cal_precision = _array(data["calibration_precision"], (2, 2))
        learner.loss = {n: float(data["loss"][n]) for n in ("learned", "prior")}
        learner.loss_weight = float(data["loss_weight"])
        if data["selected"] not in ("learned", "prior"):
            raise ValueError(f"unknown selected churn model {data['selected']!r}")
        learner.selected = str(data["selected"])
        return learner


def _array(values: Any, shape: tuple[int, ...]) -> Any:
    """A finite float array of ``shape`` from plain JSON, else ``ValueError``."""
    array = np.asarray(values, dtype=float)
    if array.shape != shape or not np.isfinite(array).all():
        raise ValueError("churn learner state has the wrong shape or non-finite numbers")
    return array


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def _log_loss(p: float, y: bool) -> float:
    q = min(max(p if y else 1.0 - p, 1e-12), 1.0)
    return -math.log(q)


def _laplace_step(
    mean: Any, precision: Any, precision0: Any, info0: Any, lam: float, x: Any, y: bool
) -> tuple[Any, Any]:
    """One outcome of Bayesian logistic regression (see :class:`OnlineChurnLearner`).

    The posterior is first flattened towards the prior (a geometric mix of the
    two Gaussians), then takes a Laplace step on the outcome at the flattened
    mean. Returns the new mean and precision.
    """
    flat_precision = lam * precision + (1.0 - lam) * precision0
    info = lam * (precision @ mean) + (1.0 - lam) * info0
    cov = np.linalg.inv(flat_precision)
    flat_mean = cov @ info
    q = _sigmoid(float(flat_mean @ x))
    h = max(q * (1.0 - q), 1e-9)
    cx = cov @ x
    cov_new = cov - np.outer(cx, cx) * (h / (1.0 + h * float(x @ cx)))
    return flat_mean + (cov_new @ x) * (float(y) - q), flat_precision + h * np.outer(x, x)
