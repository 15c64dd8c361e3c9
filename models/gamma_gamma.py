"""Expected spend per purchase: the Gamma-Gamma model of Fader, Hardie and Lee (2005).

A customer's purchase values vary around their own mean ``zeta``; the values
are ``Gamma(p, nu)`` with ``nu ~ Gamma(q, gamma)`` across customers (so
``E[value | nu] = p / nu``). Given a customer's ``x`` repeat purchases with mean
value ``m``, the conditional expectation of their mean spend is a weighted
average of their own mean and the population mean::

    E[M | x, m] = p (gamma + x m) / (p x + q - 1)

The model is fitted on repeat customers (``x > 0``, ``m > 0``), in the
conventions of the buy-till-you-die literature that ``models.features`` follows:
``x`` = repeat purchase days, ``m`` = mean daily purchase total over them
(``monetary_value``). Together with the BG/NBD expected number of purchases
(:mod:`models.btyd`) it gives the customer lifetime value (:mod:`models.clv`).

Everything here is pure (numpy, scipy). The parameter names follow
``lifetimes.GammaGammaFitter`` (``p``, ``q``, ``v`` for gamma), whose
maximum-likelihood estimates :func:`fit_gamma_gamma` reproduces
(``tests/models/test_gamma_gamma.py``).

References
----------
P. S. Fader, B. G. S. Hardie, K. L. Lee (2005), "RFM and CLV: Using Iso-Value
Curves for Customer Base Analysis", Journal of Marketing Research 42(4).
P. S. Fader, B. G. S. Hardie (2013), "The Gamma-Gamma Model of Monetary
Value" (note; the CDNOW estimates p = 6.25, q = 3.74, gamma = 15.44).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

if TYPE_CHECKING:
    from models.spend_summary import SpendSummary

__all__ = [
    "GammaGammaParams",
    "expected_spend",
    "fit_from_summary",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "simulate_gamma_gamma",
]


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters (money in the unit of ``amount``).

    Parameters
    ----------
    p
        Shape of the per-purchase value distribution around a customer's mean.
    q, v
        Shape and rate (``gamma``) of the distribution of the customers' ``nu``;
        the population mean spend is ``p * v / (q - 1)`` (for ``q > 1``).
    n_customers
        Repeat customers the fit saw.
    log_likelihood
        Total log-likelihood at the optimum.
    version
        A label for ``model_version`` fields; the learner sets it per fit.

    Examples
    --------
    >>> params = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    >>> GammaGammaParams.from_dict(params.to_dict()) == params
    True
    >>> round(params.population_mean, 2)
    35.22
    """

    p: float
    q: float
    v: float
    n_customers: int = 0
    log_likelihood: float | None = None
    version: str = "fitted"

    def __post_init__(self) -> None:
        for name in ("p", "q", "v"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(
                    f"Gamma-Gamma parameter {name} must be finite and > 0, got {value}"
                )

    @property
    def population_mean(self) -> float | None:
        """Mean spend of a customer we know nothing about (``None`` when ``q <= 1``)."""
        return self.p * self.v / (self.q - 1.0) if self.q > 1.0 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (published with the model on ``segment-models``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GammaGammaParams:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        ll = data.get("log_likelihood")
        return cls(
            p=float(data["p"]),
            q=float(data["q"]),
            v=float(data["v"]),
            n_customers=int(data.get("n_customers", 0)),
            log_likelihood=None if ll is None else float(ll),
            version=str(data.get("version", "fitted")),
        )


def gamma_gamma_log_likelihood(
    p: float,
    q: float,
    v: float,
    frequency: NDArray[np.float64],
    monetary_value: NDArray[np.float64],
    weights: NDArray[np.float64] | None = None,
) -> float:
    """Total Gamma-Gamma log-likelihood of repeat customers' mean spend.

    ``ln L = ln G(px+q) - ln G(px) - ln G(q) + q ln v + (px-1) ln m + px ln x
    - (px+q) ln(xm+v)`` per customer (the density of the mean ``m`` of ``x``
    values), as in ``lifetimes.GammaGammaFitter``.

    Examples
    --------
    >>> x = np.array([1.0, 4.0]); m = np.array([20.0, 35.0])
    >>> round(gamma_gamma_log_likelihood(6.25, 3.74, 15.44, x, m), 4)
    -7.6415
    """
    x, m = frequency, monetary_value
    px = p * x
    ll = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * math.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )
    if weights is not None:
        return float(np.dot(weights, ll))
    return float(np.sum(ll))


def fit_gamma_gamma(
    frequency: ArrayLike,
    monetary_value: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    initial: GammaGammaParams | None = None,
    penalizer: float = 0.0,
    version: str = "fitted",
) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters from repeat customers.

    Minimises the mean negative log-likelihood over the *log* parameters with
    L-BFGS-B (every parameter stays positive), from ``initial`` (default
    ``p = q = v = 1``, lifetimes' start). Identical ``(x, m)`` rows are
    collapsed with counts first. ``penalizer`` adds ``penalizer * sum(params**2)``
    to the mean negative log-likelihood (lifetimes' convention).

    Parameters
    ----------
    frequency
        Repeat purchase days ``x`` (> 0) per customer.
    monetary_value
        Mean value ``m`` (> 0) of those repeat purchases per customer.
    weights
        Customers per row (default 1 each): a row of a summary table
        (:func:`fit_from_summary`) stands for that many customers.

    Raises
    ------
    ValueError
        On empty input, mismatched shapes, non-finite values, or a customer
        with ``x <= 0`` or ``m <= 0`` (select repeat customers first).

    Examples
    --------
    >>> x, m = simulate_gamma_gamma(4000, GammaGammaParams(6.0, 4.0, 15.0), seed=3)
    >>> fit = fit_gamma_gamma(x, m)
    >>> fit.n_customers, 20 < fit.population_mean < 40
    (4000, True)
    """
    x = np.asarray(frequency, dtype=float).ravel()
    m = np.asarray(monetary_value, dtype=float).ravel()
    if x.shape != m.shape:
        raise ValueError("frequency and monetary_value must have the same length")
    if x.size == 0:
        raise ValueError("cannot fit Gamma-Gamma on zero customers")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(m))):
        raise ValueError("frequency and monetary_value must be finite")
    if np.any(x <= 0) or np.any(m <= 0):
        raise ValueError("Gamma-Gamma is fitted on repeat customers: frequency and monetary > 0")
    if penalizer < 0:
        raise ValueError("penalizer must be >= 0")
    if weights is None:
        rows, counts = np.unique(np.stack([x, m], axis=1), axis=0, return_counts=True)
        ux, um, w = rows[:, 0], rows[:, 1], counts.astype(float)
    else:
        ux, um, w = x, m, np.asarray(weights, dtype=float).ravel()
        if w.shape != x.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite, >= 0 and one per row")
    n = float(w.sum())
    if n <= 0:
        raise ValueError("cannot fit Gamma-Gamma on zero customers")
    start = (1.0, 1.0, 1.0) if initial is None else (initial.p, initial.q, initial.v)

    def objective(theta: NDArray[np.float64]) -> float:
        p, q, v = np.exp(np.clip(theta, -30.0, 30.0))
        ll = gamma_gamma_log_likelihood(p, q, v, ux, um, w)
        value = -ll / n + penalizer * float(p**2 + q**2 + v**2)
        return value if math.isfinite(value) else 1e300

    result = optimize.minimize(
        objective, np.log(start), method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 3
    )
    # A second start from the first optimum tightens the gradient tolerance.
    result = optimize.minimize(
        objective,
        result.x,
        method="L-BFGS-B",
        bounds=[(-12.0, 12.0)] * 3,
        options={"ftol": 1e-13, "gtol": 1e-9},
    )
    p, q, v = (float(value) for value in np.exp(result.x))
    return GammaGammaParams(
        p=p,
        q=q,
        v=v,
        n_customers=round(n),
        log_likelihood=gamma_gamma_log_likelihood(p, q, v, ux, um, w),
        version=version,
    )


def expected_spend(
    frequency: float | int | None,
    monetary_value: float | int | None,
    params: GammaGammaParams,
) -> float | None:
    """Conditional expected mean spend per purchase (day) of one customer.

    ``p (v + x m) / (p x + q - 1)``: the population mean for a customer without
    repeat purchases (``x = 0``), moving towards their own mean ``m`` as ``x``
    grows. ``None`` when the denominator is not positive (``q <= 1`` and no
    repeat purchases: the population mean does not exist).

    Examples
    --------
    >>> params = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    >>> round(expected_spend(0, 0.0, params), 2)  # population mean
    35.22
    >>> round(expected_spend(10, 50.0, params), 2)  # mostly the customer's own mean
    49.38
    >>> expected_spend(0, 0.0, GammaGammaParams(p=2.0, q=0.5, v=1.0)) is None
    True
    """
    x = 0.0 if frequency is None else max(float(frequency), 0.0)
    m = 0.0 if monetary_value is None or x <= 0 else max(float(monetary_value), 0.0)
    denominator = params.p * x + params.q - 1.0
    if denominator <= 0:
        return None
    return params.p * (params.v + x * m) / denominator


def simulate_gamma_gamma(
    n: int,
    params: GammaGammaParams,
    *,
    max_frequency: int = 20,
    seed: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Draw ``(frequency, monetary_value)`` for ``n`` repeat customers.

    ``nu ~ Gamma(q, 1/v)`` per customer, ``x`` uniform in ``1..max_frequency``,
    ``x`` values ``~ Gamma(p, 1/nu)``, ``m`` their mean. For tests and examples.

    Examples
    --------
    >>> x, m = simulate_gamma_gamma(3, GammaGammaParams(6.0, 4.0, 15.0), seed=0)
    >>> x.shape, bool(np.all(m > 0))
    ((3,), True)
    """
    rng = np.random.default_rng(seed)
    nu = rng.gamma(params.q, 1.0 / params.v, size=n)
    x = rng.integers(1, max_frequency + 1, size=n).astype(float)
    # The sum of x Gamma(p, 1/nu) values is Gamma(p x, 1/nu).
    m = rng.gamma(params.p * x, 1.0 / nu) / x
    return x, m


def fit_from_summary(
    summary: SpendSummary,
    *,
    min_customers: int = 50,
    initial: GammaGammaParams | None = None,
    version: str = "fitted",
) -> GammaGammaParams | None:
    """Fit on the base's spend table (:class:`models.spend_summary.SpendSummary`).

    Each row counts as that many repeat customers at the row's mean spend.
    ``None`` with fewer than ``min_customers`` repeat customers (too few to
    say how spend varies between customers). Warm-started from ``initial``.

    Examples
    --------
    >>> from models.spend_summary import SpendSummary
    >>> x, m = simulate_gamma_gamma(500, GammaGammaParams(6.0, 4.0, 15.0), seed=1)
    >>> table = SpendSummary()
    >>> for xi, mi in zip(x, m):
    ...     table.add(int(xi), float(mi))
    >>> fit = fit_from_summary(table, version="d10")
    >>> fit.version, fit.n_customers
    ('d10', 500)
    >>> fit_from_summary(SpendSummary()) is None
    True
    """
    x, m, counts = summary.table()
    if counts.sum() < min_customers:
        return None
    return fit_gamma_gamma(x, m, weights=counts, initial=initial, version=version)
