"""Customer lifetime value over a horizon: expected purchases x expected spend.

``clv = E[repeat purchase days in the next 365 days | x, t_x, T]`` (BG/NBD,
:mod:`models.btyd`) ``x E[spend per purchase day | x, m]`` (Gamma-Gamma,
:mod:`models.gamma_gamma`), undiscounted, in the unit of ``amount``. Both
models are fitted by the learner on the whole customer base and published on
``segment-models``; :func:`expected_purchases` is the only place that calls
the BG/NBD code, so another purchase model can replace it here.

A customer without a purchase has no CLV (``None``: the BG/NBD model starts
at the first purchase), and neither does anyone before the first
Gamma-Gamma fit.
"""

from __future__ import annotations

import math

from models import btyd
from models.gamma_gamma import GammaGammaParams, expected_spend

__all__ = ["HORIZON_DAYS", "customer_value", "expected_purchases"]

HORIZON_DAYS = 365


def expected_purchases(
    days: float,
    frequency: float,
    recency: float,
    T: float,
    params: btyd.BGNBDParams | None,
) -> float:
    """Expected repeat purchase days in the next ``days`` days (the purchase model).

    >>> round(expected_purchases(365, 0, 0, 10, None), 3)  # BG/NBD defaults
    1.205
    """
    return btyd.expected_purchases(days, frequency, recency, T, params)


def customer_value(
    frequency: float | None,
    recency: float | None,
    T: float | None,
    monetary_value: float | None,
    purchases: btyd.BGNBDParams | None,
    spend: GammaGammaParams | None,
    horizon_days: float = HORIZON_DAYS,
) -> float | None:
    """Predicted value of one customer over ``horizon_days`` (``None`` if unknown).

    Parameters
    ----------
    frequency, recency, T, monetary_value
        The customer's BTYD summary in days (``models.features``).
    purchases
        BG/NBD parameters (``None``: :data:`models.btyd.DEFAULT_PARAMS`).
    spend
        Gamma-Gamma parameters (``None`` before the first fit: no CLV).

    Examples
    --------
    >>> spend = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    >>> round(customer_value(4, 60, 90, 50.0, None, spend), 2)
    251.68
    >>> customer_value(0, 0, None, 0.0, None, spend) is None  # never bought
    True
    >>> customer_value(4, 60, 90, 50.0, None, None) is None  # no spend model yet
    True
    """
    if T is None or spend is None:
        return None
    x = float(frequency or 0)
    per_purchase = expected_spend(x, monetary_value, spend)
    if per_purchase is None:
        return None
    purchases_ahead = expected_purchases(horizon_days, x, float(recency or 0), float(T), purchases)
    value = purchases_ahead * per_purchase
    # (the hypergeometric term can overflow for extreme fitted parameters)
    return value if math.isfinite(value) and value >= 0 else None
