"""The Pareto/NBD model of Schmittlein, Morrison and Colombo (1987).

A customer buys at a Poisson rate ``lambda ~ Gamma(r, alpha)`` while alive and
stays alive for an exponential lifetime with rate ``mu ~ Gamma(s, beta)``,
independent of the purchases (where BG/NBD lets the customer drop out only
right after a purchase). From a customer's summary ``(x, t_x, T)`` -- repeat
purchase days, days from the first to the last purchase day, days from the
first purchase day to the clock -- it gives the probability that the customer
is alive, the expected purchases in the next ``t`` days and the probability
of none.

Everything is pure numpy/scipy and vectorised; durations are in **days**. The
log-likelihood follows Fader and Hardie's note "A Note on Deriving the
Pareto/NBD Model and Related Expressions" (2005), eq. (22) with the Gauss
hypergeometric terms evaluated in log space as the ``lifetimes`` package
does, so the maximum-likelihood parameters agree with
``lifetimes.ParetoNBDFitter`` (tested).

Examples
--------
>>> p = ParetoNBDParams(r=0.55, alpha=10.58, s=0.61, beta=11.67)  # CDNOW, weeks
>>> round(float(pareto_prob_alive(2, 30.43, 38.86, p)), 3)
0.868
>>> round(float(pareto_expected_purchases(39, 2, 30.43, 38.86, p)), 3)
1.45
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
    "ParetoNBDParams",
    "fit_pareto_nbd",
    "pareto_expected_purchases",
    "pareto_log_likelihood",
    "pareto_prob_alive",
    "pareto_prob_no_purchase",
    "simulate_pareto_nbd",
]


@dataclass(frozen=True, slots=True)
class ParetoNBDParams:
    """Pareto/NBD parameters, time unit = days (or whatever the data used).

    Parameters
    ----------
    r, alpha
        Shape and rate of the Gamma distribution of purchase rates.
    s, beta
        Shape and rate of the Gamma distribution of drop-out rates
        (mean lifetime ``beta / (s - 1)`` when ``s > 1``).
    n_customers
        How many customers the fit saw.
    log_likelihood
        Total log-likelihood at the optimum (``None`` when not fitted).
    version
        A label for ``model_version`` fields.

    Examples
    --------
    >>> p = ParetoNBDParams(r=0.55, alpha=74.0, s=0.61, beta=81.7)
    >>> ParetoNBDParams.from_dict(p.to_dict()) == p
    True
    """

    r: float
    alpha: float
    s: float
    beta: float
    n_customers: int = 0
    log_likelihood: float | None = None
    version: str = "default"

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "s", "beta"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Pareto/NBD parameter {name} must be finite and > 0, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParetoNBDParams:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        ll = data.get("log_likelihood")
        return cls(
            r=float(data["r"]),
            alpha=float(data["alpha"]),
            s=float(data["s"]),
            beta=float(data["beta"]),
            n_customers=int(data.get("n_customers", 0)),
            log_likelihood=None if ll is None else float(ll),
            version=str(data.get("version", "default")),
        )


def _arrays(*values: ArrayLike) -> list[NDArray[np.float64]]:
    return [np.asarray(v, dtype=float) for v in values]


def _log_a0(
    r: float,
    alpha: float,
    s: float,
    beta: float,
    x: NDArray[np.float64],
    t_x: NDArray[np.float64],
    T: NDArray[np.float64],
) -> NDArray[np.float64]:
    """``log A_0`` of the likelihood (the integral over the death time), stably."""
    if alpha < beta:
        big, small, second = beta, alpha, r + x
    else:
        big, small, second = alpha, beta, np.full_like(x, s + 1.0)
    gap = big - small
    rsx = r + s + x
    p1 = special.hyp2f1(rsx, second, rsx + 1.0, gap / (big + t_x))
    q1 = big + t_x
    p2 = special.hyp2f1(rsx, second, rsx + 1.0, gap / (big + T))
    q2 = big + T
    # log(p1 / q1**rsx - p2 / q2**rsx) without cancelling into zero.
    first = np.log(p1) - rsx * np.log(q1)
    second_term = np.log(p2) - rsx * np.log(q2)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = first + np.log1p(-np.exp(second_term - first))
    # t_x == T: the two terms are equal and A_0 is 0 (log -inf).
    return np.where(second_term < first, diff, -np.inf)


def _log_terms(
    p: ParetoNBDParams, x: NDArray[np.float64], t_x: NDArray[np.float64], T: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``(log A_1, log alive term, log dead term)`` of the likelihood."""
    r, alpha, s, beta = p.r, p.alpha, p.s, p.beta
    log_a1 = special.gammaln(r + x) - special.gammaln(r) + r * math.log(alpha) + s * math.log(beta)
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    dead = math.log(s) + _log_a0(r, alpha, s, beta, x, t_x, T) - np.log(r + s + x)
    return log_a1, alive, dead


def pareto_log_likelihood(
    p: ParetoNBDParams,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
) -> float:
    """Total Pareto/NBD log-likelihood; ``weights`` count identical customers.

    Examples
    --------
    >>> p = ParetoNBDParams(r=0.55, alpha=10.58, s=0.61, beta=11.67)
    >>> round(pareto_log_likelihood(p, [0, 2], [0, 30.43], [38.86, 38.86]), 4)
    -10.079
    """
    x, t_x, big_t = _arrays(frequency, recency, T)
    log_a1, alive, dead = _log_terms(p, x, t_x, big_t)
    ll = log_a1 + np.logaddexp(alive, dead)
    if weights is None:
        return float(np.sum(ll))
    return float(np.dot(np.asarray(weights, dtype=float), ll))


def pareto_prob_alive(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, p: ParetoNBDParams
) -> NDArray[np.float64]:
    """P(alive at T | x, t_x, T): the alive term's share of the likelihood.

    Examples
    --------
    >>> p = ParetoNBDParams(r=0.55, alpha=10.58, s=0.61, beta=11.67)
    >>> pareto_prob_alive([0, 5, 5], [0, 10, 38], [38, 38, 38], p).round(3).tolist()
    [0.299, 0.051, 1.0]
    """
    x, t_x, big_t = _arrays(frequency, recency, T)
    _, alive, dead = _log_terms(p, x, t_x, np.maximum(big_t, t_x))
    return np.asarray(special.expit(alive - dead), dtype=float)


def pareto_expected_purchases(
    t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, p: ParetoNBDParams
) -> NDArray[np.float64]:
    """Expected purchases in the next ``t`` days given the history.

    ``E = P(alive) * (r + x)(beta + T) / ((alpha + T)(s - 1)) * (1 - ((beta + T) /
    (beta + T + t))**(s - 1))`` (Schmittlein et al. 1987; the ``s -> 1`` limit
    is a logarithm).

    Examples
    --------
    >>> p = ParetoNBDParams(r=0.55, alpha=10.58, s=0.61, beta=11.67)
    >>> round(float(pareto_expected_purchases(39, 0, 0, 38.86, p)), 3)
    0.106
    """
    x, t_x, big_t = _arrays(frequency, recency, T)
    alive = pareto_prob_alive(x, t_x, big_t, p)
    ratio = (p.beta + big_t) / (p.beta + big_t + t)
    if abs(p.s - 1.0) < 1e-8:
        horizon_part = -np.log(ratio)
    else:
        horizon_part = (1.0 - ratio ** (p.s - 1.0)) / (p.s - 1.0)
    return np.asarray(
        alive * (p.r + x) * (p.beta + big_t) / (p.alpha + big_t) * horizon_part, dtype=float
    )


def pareto_prob_no_purchase(
    t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, p: ParetoNBDParams
) -> NDArray[np.float64]:
    """P(no purchase in the next ``t`` days | x, t_x, T).

    The history "x purchases, the last at ``t_x``, none until ``T + t``" has
    likelihood ``L(x, t_x, T + t)``, so the probability is ``L(x, t_x, T + t)
    / L(x, t_x, T)``: no special function beyond the likelihood's own.

    Examples
    --------
    >>> p = ParetoNBDParams(r=0.55, alpha=10.58, s=0.61, beta=11.67)
    >>> pareto_prob_no_purchase(39, [0, 10], [0, 38], [38, 38], p).round(3).tolist()
    [0.93, 0.055]
    """
    x, t_x, big_t = _arrays(frequency, recency, T)
    big_t = np.maximum(big_t, t_x)
    _, alive_now, dead_now = _log_terms(p, x, t_x, big_t)
    _, alive_later, dead_later = _log_terms(p, x, t_x, big_t + t)
    out = np.exp(np.logaddexp(alive_later, dead_later) - np.logaddexp(alive_now, dead_now))
    return np.asarray(np.clip(out, 0.0, 1.0), dtype=float)


def fit_pareto_nbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    initial: ParetoNBDParams | None = None,
    penalizer: float = 0.0,
    version: str = "fitted",
) -> ParetoNBDParams:
    """Maximum-likelihood Pareto/NBD parameters from (weighted) customer summaries.

    Minimises the mean negative log-likelihood plus ``penalizer * sum(params**2)``
    (``lifetimes``' convention) over the log-parameters with L-BFGS-B, from
    ``initial`` (default: ``r = s = 1``, ``alpha = beta`` = the mean ``T``).

    Raises
    ------
    ValueError
        On empty input, negative or non-finite values, ``recency > T``.

    Examples
    --------
    >>> truth = ParetoNBDParams(r=0.8, alpha=40.0, s=0.7, beta=60.0)
    >>> x, tx, t = simulate_pareto_nbd(4000, 365.0, truth, seed=2)
    >>> fit = fit_pareto_nbd(x, tx, t)
    >>> 0.6 < fit.r / truth.r < 1.4 and 0.6 < fit.r / fit.alpha / (truth.r / truth.alpha) < 1.4
    True
    """
    x, t_x, big_t = _arrays(frequency, recency, T)
    x, t_x, big_t = x.ravel(), t_x.ravel(), big_t.ravel()
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float).ravel()
    if not (x.shape == t_x.shape == big_t.shape == w.shape):
        raise ValueError("frequency, recency, T and weights must have the same length")
    if x.size == 0 or float(w.sum()) <= 0:
        raise ValueError("cannot fit Pareto/NBD on zero customers")
    if not all(np.all(np.isfinite(a)) for a in (x, t_x, big_t, w)):
        raise ValueError("frequency, recency, T and weights must be finite")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(big_t < 0) or np.any(w < 0):
        raise ValueError("frequency, recency, T and weights must be >= 0")
    if np.any(t_x > big_t + 1e-9):
        raise ValueError("recency must not exceed T")
    n = float(w.sum())
    if initial is None:
        mean_t = max(float(np.dot(w, big_t) / n), 1.0)
        initial = ParetoNBDParams(r=1.0, alpha=mean_t, s=1.0, beta=mean_t)
    theta0 = np.log([initial.r, initial.alpha, initial.s, initial.beta])

    def objective(theta: NDArray[np.float64]) -> float:
        r, alpha, s, beta = np.exp(np.clip(theta, -30.0, 30.0))
        try:
            params = ParetoNBDParams(r=r, alpha=alpha, s=s, beta=beta)
        except ValueError:
            return 1e300
        with np.errstate(all="ignore"):
            ll = pareto_log_likelihood(params, x, t_x, big_t, w)
        value = -ll / n + penalizer * float(r**2 + alpha**2 + s**2 + beta**2)
        return value if math.isfinite(value) else 1e300

    # Bounds keep the search out of regions where the hypergeometric series
    # converge slowly (and no real base lives): parameters in [1e-4, 1e5].
    result = optimize.minimize(
        objective,
        np.clip(theta0, -9.0, 11.0),
        method="L-BFGS-B",
        bounds=[(-9.0, 11.0)] * 4,
        options={"ftol": 1e-13, "gtol": 1e-9, "maxiter": 500},
    )
    r, alpha, s, beta = (float(v) for v in np.exp(result.x))
    fitted = ParetoNBDParams(r=r, alpha=alpha, s=s, beta=beta)
    return ParetoNBDParams(
        r=r,
        alpha=alpha,
        s=s,
        beta=beta,
        n_customers=round(n),
        log_likelihood=pareto_log_likelihood(fitted, x, t_x, big_t, w),
        version=version,
    )


def simulate_pareto_nbd(
    n: int, T: float | ArrayLike, params: ParetoNBDParams, *, seed: int | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Draw ``(frequency, recency, T)`` for ``n`` customers from a Pareto/NBD process.

    Each customer makes a first purchase at time 0, then buys at Poisson
    rate ``lambda ~ Gamma(r, 1/alpha)`` until an exponential death with rate
    ``mu ~ Gamma(s, 1/beta)``; observed until ``T``.

    Examples
    --------
    >>> x, tx, t = simulate_pareto_nbd(5, 100.0, ParetoNBDParams(1, 20, 1, 50), seed=0)
    >>> bool(np.all(tx <= t)) and x.shape == (5,)
    True
    """
    rng = np.random.default_rng(seed)
    horizon = np.broadcast_to(np.asarray(T, dtype=float), (n,)).astype(float)
    lam = rng.gamma(params.r, 1.0 / params.alpha, size=n)
    mu = rng.gamma(params.s, 1.0 / params.beta, size=n)
    death = rng.exponential(1.0, size=n) / np.maximum(mu, 1e-300)
    end = np.minimum(death, horizon)
    freq = rng.poisson(lam * end).astype(float)
    # Given the count, purchase times are uniform on (0, end): the last is the max.
    rec = np.where(freq > 0, end * rng.random(n) ** (1.0 / np.maximum(freq, 1.0)), 0.0)
    return freq, rec, horizon.copy()
