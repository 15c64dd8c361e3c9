"""Buy-till-you-die maths: the BG/NBD model of Fader, Hardie and Lee (2005).

The BG/NBD model describes a customer's repeat purchases as a Poisson process
with rate ``lambda ~ Gamma(r, alpha)`` that stops for good ("the customer dies")
after any repeat purchase with probability ``p ~ Beta(a, b)``. From a
customer's summary ``(frequency, recency, T)`` -- repeat purchase days, days
from the first to the last purchase day, days from the first purchase day to
the stream clock -- it gives the probability that the customer is still alive.

Everything here is pure: a scalar :func:`prob_alive` for the per-event scoring
path (``math`` only, a few microseconds), a vectorised :func:`prob_alive_np`,
the vectorised log-likelihood :func:`bgnbd_log_likelihood`, and :func:`fit_bgnbd`,
the maximum-likelihood fit that the learner runs periodically on a sample of
the whole customer base. Durations are in **days** throughout.

References
----------
P. S. Fader, B. G. S. Hardie, K. L. Lee (2005), "Counting Your Customers the
Easy Way: An Alternative to the Pareto/NBD Model", Marketing Science 24(2).
P. S. Fader, B. G. S. Hardie, K. L. Lee (2008), "Computing P(alive) Using the
BG/NBD Model" (note; the ``x = 0`` case gives ``P(alive) = 1``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

__all__ = [
    "CDNOW_PARAMS_WEEKS",
    "DEFAULT_PARAMS",
    "BGNBDParams",
    "bgnbd_expected_purchases_np",
    "bgnbd_log_likelihood",
    "bgnbd_prob_no_purchase",
    "expected_purchases",
    "fit_bgnbd",
    "prob_alive",
    "prob_alive_np",
    "simulate_bgnbd",
]


@dataclass(frozen=True, slots=True)
class BGNBDParams:
    """Fitted (or default) BG/NBD parameters, time unit = days.

    Parameters
    ----------
    r, alpha
        Shape and rate of the Gamma distribution of purchase rates
        (mean purchase rate ``r / alpha`` purchases per day).
    a, b
        Shape parameters of the Beta distribution of the drop-out probability
        after each repeat purchase (mean ``a / (a + b)``).
    n_customers
        How many customers the fit saw (0 for hand-set defaults).
    log_likelihood
        Total log-likelihood at the optimum (``None`` for defaults).
    version
        A label for ``model_version`` fields; the learner bumps it per fit.

    Examples
    --------
    >>> p = BGNBDParams(r=0.243, alpha=30.9, a=0.793, b=2.426)
    >>> BGNBDParams.from_dict(p.to_dict()) == p
    True
    >>> round(p.r / p.alpha * 365, 2)  # mean purchases per year while alive
    2.87
    """

    r: float
    alpha: float
    a: float
    b: float
    n_customers: int = 0
    log_likelihood: float | None = None
    version: str = "default"

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "a", "b"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"BG/NBD parameter {name} must be finite and > 0, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for the compacted model topic)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BGNBDParams:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        ll = data.get("log_likelihood")
        return cls(
            r=float(data["r"]),
            alpha=float(data["alpha"]),
            a=float(data["a"]),
            b=float(data["b"]),
            n_customers=int(data.get("n_customers", 0)),
            log_likelihood=None if ll is None else float(ll),
            version=str(data.get("version", "default")),
        )


#: The published CDNOW estimates (Fader, Hardie, Lee 2005), time unit = weeks.
CDNOW_PARAMS_WEEKS = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426, version="cdnow-weeks")

#: Defaults used until the first fit: the CDNOW estimates rescaled to days
#: (a rate in days is a rate in weeks / 7, so ``alpha_days = 7 * alpha_weeks``;
#: ``r, a, b`` are unit-free). About 2.9 purchases a year for the mean customer,
#: a 25 % chance to drop out after each repeat purchase.
DEFAULT_PARAMS = BGNBDParams(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426, version="default")


def _clean(value: float | int | None) -> float:
    return 0.0 if value is None or value != value else float(value)


def prob_alive(
    frequency: float | int | None,
    recency: float | int | None,
    T: float | int | None,
    params: BGNBDParams | None = None,
) -> float:
    """P(alive | frequency, recency, T) under BG/NBD, for one customer.

    ``P = 1 / (1 + [x > 0] * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))``,
    evaluated in log space so large ``x`` or ``T`` neither overflow nor lose
    precision. ``None`` inputs count as 0; ``recency`` is clipped to ``[0, T]``.

    Parameters
    ----------
    frequency
        Repeat purchase days ``x`` (distinct purchase days - 1).
    recency
        ``t_x``: days from the first to the last purchase day.
    T
        Days from the first purchase day to the stream clock.
    params
        Fitted parameters in days; :data:`DEFAULT_PARAMS` when ``None``.

    Examples
    --------
    >>> prob_alive(0, 0, 400)  # no repeat purchase: BG/NBD cannot see a death
    1.0
    >>> round(prob_alive(10, 100, 100), 3)  # bought on the clock's day
    0.935
    >>> round(prob_alive(10, 100, 300), 3)  # ...but silent for 200 days since
    0.001
    >>> round(prob_alive(2, 30.43, 38.86, CDNOW_PARAMS_WEEKS), 4)  # weeks
    0.7266
    """
    p = DEFAULT_PARAMS if params is None else params
    x = _clean(frequency)
    big_t = max(_clean(T), 0.0)
    t_x = min(max(_clean(recency), 0.0), big_t)
    if x <= 0:
        return 1.0
    log_odds_dead = (
        math.log(p.a)
        - math.log(p.b + x - 1.0)
        + (p.r + x) * (math.log(p.alpha + big_t) - math.log(p.alpha + t_x))
    )
    # 1 / (1 + exp(z)) without overflow.
    if log_odds_dead > 0:
        e = math.exp(-log_odds_dead)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(log_odds_dead))


def prob_alive_np(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    params: BGNBDParams | None = None,
) -> NDArray[np.float64]:
    """Vectorised :func:`prob_alive` over arrays (same conventions).

    Examples
    --------
    >>> prob_alive_np([0, 10, 10], [0, 100, 100], [400, 100, 300]).round(3).tolist()
    [1.0, 0.935, 0.001]
    """
    p = DEFAULT_PARAMS if params is None else params
    x = np.nan_to_num(np.asarray(frequency, dtype=float), nan=0.0)
    big_t = np.maximum(np.nan_to_num(np.asarray(T, dtype=float), nan=0.0), 0.0)
    t_x = np.clip(np.nan_to_num(np.asarray(recency, dtype=float), nan=0.0), 0.0, big_t)
    xs = np.maximum(x, 1.0)  # keeps log(b + x - 1) finite; x = 0 is masked below
    z = (
        np.log(p.a)
        - np.log(p.b + xs - 1.0)
        + (p.r + xs) * (np.log(p.alpha + big_t) - np.log(p.alpha + t_x))
    )
    out = special.expit(-z)
    return np.where(x > 0, out, 1.0).astype(np.float64)


def bgnbd_log_likelihood(
    r: float,
    alpha: float,
    a: float,
    b: float,
    frequency: NDArray[np.float64],
    recency: NDArray[np.float64],
    T: NDArray[np.float64],
    weights: NDArray[np.float64] | None = None,
) -> float:
    """Total BG/NBD log-likelihood of the customers (vectorised, log space).

    ``ln L = ln G(r+x) - ln G(r) + r ln(alpha) + ln B(a, b+x) - ln B(a, b)
    + logaddexp(-(r+x) ln(alpha+T), [x>0](ln a - ln(b+x-1) - (r+x) ln(alpha+t_x)))``

    ``weights`` counts identical customers (so a fit can compress duplicates).

    Examples
    --------
    >>> x = np.array([0.0, 2.0]); tx = np.array([0.0, 30.43]); t = np.array([38.86, 38.86])
    >>> round(bgnbd_log_likelihood(0.243, 4.414, 0.793, 2.426, x, tx, t), 4)
    -10.0133
    """
    x = frequency
    log_a1 = special.gammaln(r + x) - special.gammaln(r) + r * math.log(alpha)
    log_a2 = (
        special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    log_a3 = -(r + x) * np.log(alpha + T)
    xs = np.maximum(x, 1.0)
    log_a4 = np.where(
        x > 0,
        math.log(a) - np.log(b + xs - 1.0) - (r + x) * np.log(alpha + recency),
        -np.inf,
    )
    ll = log_a1 + log_a2 + np.logaddexp(log_a3, log_a4)
    if weights is not None:
        return float(np.dot(weights, ll))
    return float(np.sum(ll))


def fit_bgnbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    initial: BGNBDParams | None = None,
    penalizer: float = 0.0,
    version: str = "fitted",
) -> BGNBDParams:
    """Maximum-likelihood BG/NBD parameters from customer summaries.

    Minimises the negative log-likelihood over the *log* parameters with
    L-BFGS-B (so every parameter stays positive), starting from ``initial``
    (or :data:`DEFAULT_PARAMS`). Identical ``(x, t_x, T)`` rows are collapsed
    with counts first, which makes a fit on whole-day summaries of a large
    sample cheap. ``penalizer`` adds ``penalizer * n * sum(params**2)``
    (lifetimes' convention) to keep the fit stable on small or degenerate
    samples; 0 gives the plain MLE.

    Parameters
    ----------
    frequency, recency, T
        Arrays of repeat purchase days, ``t_x`` and ``T`` (days).
    weights
        How many customers each row stands for (a summary table of distinct
        rows, :class:`models.btyd_summary.BTYDSummary`); 1 each when ``None``.
    initial
        Starting point; defaults to :data:`DEFAULT_PARAMS`.
    penalizer
        L2 penalty on the parameters (>= 0).
    version
        Stored on the result, for ``model_version``.

    Raises
    ------
    ValueError
        On empty input, negative values, mismatched shapes or ``recency > T``.

    Examples
    --------
    >>> f, rec, t = simulate_bgnbd(3000, 365, DEFAULT_PARAMS, seed=1)
    >>> fit = fit_bgnbd(f, rec, t)
    >>> fit.n_customers, 0.1 < fit.r < 0.5, 0.5 < fit.a / (fit.a + fit.b) / 0.246 < 1.5
    (3000, True, True)
    """
    x = np.asarray(frequency, dtype=float).ravel()
    t_x = np.asarray(recency, dtype=float).ravel()
    big_t = np.asarray(T, dtype=float).ravel()
    row_weights = None if weights is None else np.asarray(weights, dtype=float).ravel()
    if not (x.shape == t_x.shape == big_t.shape) or (
        row_weights is not None and row_weights.shape != x.shape
    ):
        raise ValueError("frequency, recency, T and weights must have the same length")
    if x.size == 0 or (row_weights is not None and float(row_weights.sum()) <= 0):
        raise ValueError("cannot fit BG/NBD on zero customers")
    if row_weights is not None and (
        not np.all(np.isfinite(row_weights)) or np.any(row_weights < 0)
    ):
        raise ValueError("weights must be finite and >= 0")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(t_x)) and np.all(np.isfinite(big_t))):
        raise ValueError("frequency, recency and T must be finite")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(big_t < 0):
        raise ValueError("frequency, recency and T must be >= 0")
    if np.any(t_x > big_t + 1e-9):
        raise ValueError("recency must not exceed T")
    if penalizer < 0:
        raise ValueError("penalizer must be >= 0")

    if row_weights is None:
        rows = np.stack([x, t_x, big_t], axis=1)
        uniq, counts = np.unique(rows, axis=0, return_counts=True)
        ux, utx, ut = uniq[:, 0], uniq[:, 1], uniq[:, 2]
        w = counts.astype(float)
    else:
        ux, utx, ut, w = x, t_x, big_t, row_weights
    n = float(w.sum())

    start = DEFAULT_PARAMS if initial is None else initial
    theta0 = np.log([start.r, start.alpha, start.a, start.b])

    def objective(theta: NDArray[np.float64]) -> float:
        r, alpha, a, b = np.exp(np.clip(theta, -30.0, 30.0))
        ll = bgnbd_log_likelihood(r, alpha, a, b, ux, utx, ut, w)
        penalty = penalizer * n * float(r**2 + alpha**2 + a**2 + b**2)
        value = -(ll - penalty) / n
        return value if math.isfinite(value) else 1e300

    result = optimize.minimize(
        objective,
        theta0,
        method="L-BFGS-B",
        bounds=[(-12.0, 12.0)] * 4,
        options={"ftol": 1e-13, "gtol": 1e-9, "maxiter": 500},
    )
    r, alpha, a, b = (float(v) for v in np.exp(result.x))
    total_ll = bgnbd_log_likelihood(r, alpha, a, b, ux, utx, ut, w)
    return BGNBDParams(
        r=r,
        alpha=alpha,
        a=a,
        b=b,
        n_customers=round(n),
        log_likelihood=total_ll,
        version=version,
    )


def expected_purchases(
    t: float,
    frequency: float,
    recency: float,
    T: float,
    params: BGNBDParams | None = None,
) -> float:
    """Expected repeat purchases in the next ``t`` days given the history.

    The conditional expectation of Fader, Hardie, Lee (2005), eq. 10 (uses
    the Gauss hypergeometric function). Used in the tests to check the
    parameterisation against the paper's worked example.

    Examples
    --------
    >>> round(expected_purchases(39, 2, 30.43, 38.86, CDNOW_PARAMS_WEEKS), 3)
    1.226
    """
    p = DEFAULT_PARAMS if params is None else params
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    x = float(frequency)
    z = t / (alpha + T + t)
    hyp = float(special.hyp2f1(r + x, b + x, a + b + x - 1.0, z))
    first = (a + b + x - 1.0) / (a - 1.0)
    second = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
    denom = 1.0 + (x > 0) * (a / (b + x - 1.0)) * ((alpha + T) / (alpha + recency)) ** (r + x)
    return first * second / denom


def bgnbd_expected_purchases_np(
    t: float,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    params: BGNBDParams | None = None,
) -> NDArray[np.float64]:
    """Vectorised :func:`expected_purchases` (same formula, arrays in and out).

    Examples
    --------
    >>> bgnbd_expected_purchases_np(39, [2, 0], [30.43, 0], [38.86, 38.86],
    ...                             CDNOW_PARAMS_WEEKS).round(3).tolist()
    [1.226, 0.195]
    """
    p = DEFAULT_PARAMS if params is None else params
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    x = np.asarray(frequency, dtype=float)
    big_t = np.asarray(T, dtype=float)
    t_x = np.minimum(np.asarray(recency, dtype=float), big_t)
    z = t / (alpha + big_t + t)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1.0, z)
    first = (a + b + x - 1.0) / (a - 1.0)
    second = 1.0 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp
    alive = prob_alive_np(x, t_x, big_t, p)
    return np.asarray(np.maximum(first * second * alive, 0.0), dtype=float)


def bgnbd_prob_no_purchase(
    t: float,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    params: BGNBDParams | None = None,
) -> NDArray[np.float64]:
    """P(no purchase in the next ``t`` days | x, t_x, T) under BG/NBD.

    A dead customer buys nothing; one alive at ``T`` has a purchase rate
    distributed ``Gamma(r + x, alpha + T)`` and cannot die without buying, so
    ``P = 1 - P(alive) + P(alive) * ((alpha + T) / (alpha + T + t)) ** (r + x)``
    (equal to ``L(x, t_x, T + t) / L(x, t_x, T)``).

    Examples
    --------
    >>> bgnbd_prob_no_purchase(39, [0, 2], [0, 30.43], [38.86, 38.86],
    ...                        CDNOW_PARAMS_WEEKS).round(3).tolist()
    [0.855, 0.445]
    """
    p = DEFAULT_PARAMS if params is None else params
    x = np.asarray(frequency, dtype=float)
    big_t = np.asarray(T, dtype=float)
    alive = prob_alive_np(x, recency, big_t, p)
    stay = ((p.alpha + big_t) / (p.alpha + big_t + t)) ** (p.r + x)
    return np.asarray(1.0 - alive + alive * stay, dtype=float)


def simulate_bgnbd(
    n: int,
    T: float | ArrayLike,
    params: BGNBDParams | None = None,
    *,
    seed: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Draw ``(frequency, recency, T)`` for ``n`` customers from a BG/NBD process.

    Continuous time: each customer starts with a first purchase at time 0,
    then buys at exponential gaps with rate ``lambda ~ Gamma(r, 1/alpha)`` and,
    after each repeat purchase, dies with probability ``p ~ Beta(a, b)``.
    Used by the tests (parameter recovery) and the documentation examples.

    Examples
    --------
    >>> f, rec, t = simulate_bgnbd(5, 100.0, seed=0)
    >>> bool(np.all(rec <= t)) and f.shape == (5,)
    True
    """
    p = DEFAULT_PARAMS if params is None else params
    rng = np.random.default_rng(seed)
    horizon = np.broadcast_to(np.asarray(T, dtype=float), (n,)).astype(float)
    lam = rng.gamma(p.r, 1.0 / p.alpha, size=n)
    drop = rng.beta(p.a, p.b, size=n)
    freq = np.zeros(n)
    rec = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    now = np.zeros(n)
    # Vectorised event loop: each round draws the next purchase of every
    # customer still alive and inside the horizon.
    while alive.any():
        idx = np.flatnonzero(alive)
        gap = rng.exponential(1.0, size=idx.size) / np.maximum(lam[idx], 1e-300)
        nxt = now[idx] + gap
        inside = nxt <= horizon[idx]
        buyers = idx[inside]
        freq[buyers] += 1.0
        rec[buyers] = nxt[inside]
        now[buyers] = nxt[inside]
        alive[idx[~inside]] = False
        dies = rng.random(buyers.size) < drop[buyers]
        alive[buyers[dies]] = False
    return freq, rec, horizon.copy()
