"""Customer lifetime value over a horizon: expected purchases x expected spend.

``clv = E[repeat purchase days in the next 365 days | x, t_x, T]`` (the
churn learner's BTYD fit, :class:`models.churn_model.BTYDFit`: the mean of
BG/NBD and Pareto/NBD, BG/NBD's alone before Pareto/NBD is fitted)
``x E[spend per purchase day | x, m]`` (Gamma-Gamma,
:mod:`models.gamma_gamma`), undiscounted, in the unit of ``amount``. Both
models are fitted by the churn learner on the whole base's summary tables
and published on ``segment-models``; :func:`expected_purchases` is the only
place that asks a purchase model, so another one can replace it here.

The value is unknown (``None``) for a customer without a purchase (the BTYD
models start at the first purchase), and for everyone until the learner's
first fit of both models (no parameters of this customer base yet).
"""

from __future__ import annotations

import math

from models.churn_model import BTYDFit
from models.gamma_gamma import GammaGammaParams, expected_spend

__all__ = ["HORIZON_DAYS", "customer_value", "expected_purchases"]

HORIZON_DAYS = 365


def expected_purchases(
    days: float, frequency: float, recency: float, T: float, purchases: BTYDFit
) -> float:
    """Expected repeat purchase days in the next ``days`` days (the purchase model).

    >>> round(expected_purchases(365, 0, 0, 10, BTYDFit()), 3)  # BG/NBD defaults
    1.205
    """
    return purchases.quantities(frequency, recency, T, days)[1]


def customer_value(
    frequency: float | None,
    recency: float | None,
    T: float | None,
    monetary_value: float | None,
    purchases: BTYDFit | None,
    spend: GammaGammaParams | None,
    horizon_days: float = HORIZON_DAYS,
) -> float | None:
    """Predicted value of one customer over ``horizon_days`` (``None`` if unknown).

    Parameters
    ----------
    frequency, recency, T, monetary_value
        The customer's BTYD summary in days (``models.features``).
    purchases
        The BTYD fit (``None``, or the defaults of a fit never made: no CLV).
    spend
        Gamma-Gamma parameters (``None`` before the first fit: no CLV).

    Examples
    --------
    >>> from models.btyd import DEFAULT_PARAMS
    >>> fit = BTYDFit(bgnbd=DEFAULT_PARAMS, day=100)
    >>> spend = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    >>> round(customer_value(4, 60, 90, 50.0, fit, spend), 2)
    251.68
    >>> customer_value(0, 0, None, 0.0, fit, spend) is None  # never bought
    True
    >>> customer_value(4, 60, 90, 50.0, fit, None) is None  # no spend model yet
    True
    >>> customer_value(4, 60, 90, 50.0, BTYDFit(), spend) is None  # no BTYD fit yet
    True
    """
    if T is None or spend is None or purchases is None or purchases.day is None:
        return None
    x = float(frequency or 0)
    per_purchase = expected_spend(x, monetary_value, spend)
    if per_purchase is None:
        return None
    purchases_ahead = expected_purchases(horizon_days, x, float(recency or 0), float(T), purchases)
    value = purchases_ahead * per_purchase
    # (BTYDFit.quantities is finite for any fitted parameters; a guard, not a case)
    return value if math.isfinite(value) and value >= 0 else None
