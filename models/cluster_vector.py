"""The clustering feature vector: a few behaviour dimensions per customer.

:func:`cluster_vector` turns the flat feature dict of ``models.features``
(``read_features``) into the small, dense-ish vector the segment model learns
from. Every dimension is a *behaviour*, transformed so that standard scaling
makes sense (``log1p`` for heavy-tailed counts and money, bounded rates, scores
centred on their neutral point).

Unknown values are **omitted** from the vector rather than invented: the
learner and the assigner treat an absent dimension as "at the population mean"
(z-score 0), so a customer who never bought is not pushed towards cheap baskets
just because their average order value is undefined. Where a true neutral
value exists (no feedback means a neutral opinion, no tickets means no
escalations) that value is used instead.

=================== ===========================================================
dimension           definition and why
=================== ===========================================================
``purchase_rate``   ``log1p(orders per 30 days)`` over the last 90 days, or over
                    the tenure when it is shorter (at least 30 days): how often
                    someone buys, comparable between old and new customers.
``order_value``     ``log1p(avg_order_value)``: basket size; money is
                    log-normal-ish, so log makes "twice as much" one step.
                    Omitted without orders.
``browse_intensity`` ``log1p(product_views_30d)``: how much someone looks
                    around; recent window so it tracks current behaviour.
``cart_conversion`` ``(orders + 0.5) / (cart_adds + 1)`` capped at 1: how often
                    interest turns into a purchase; separates window shoppers.
                    Omitted with neither cart adds nor orders.
``support_load``    ``log1p(tickets_90d)``: recent need for help.
``escalation_share`` ``(escalations + 0.4) / (tickets + 4)``: the share of
                    escalated tickets, shrunk towards 10 % for customers with
                    few tickets, so that one escalated ticket does not make a
                    group of its own; how bad the support experience is.
``sentiment``       mean of the available centred scores ``(nps_avg - 7.5) /
                    2.5``, ``(csat_avg - 3.5) / 1.5``, ``(review_avg - 3.5) /
                    1.5``; 0 (neutral) without feedback. Detractors < 0 <
                    promoters.
``dormancy``        ``log1p(days_since_last_event)``: how long since the
                    customer did anything; separates lapsing customers.
=================== ===========================================================

Tenure (days since the first purchase) is deliberately **not** a dimension:
it is a lifecycle notion (the ``lifecycle`` segment says ``new``), it is
dominated by where the history starts, and in the clustering it split
groups that behave alike into "bought for the first time recently" and the
rest (measured in ``docs/clustering.md``, "Choosing k").
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = [
    "ESCALATION_PRIOR",
    "FEATURES",
    "FEATURE_NAMES",
    "cluster_vector",
]

FEATURES: tuple[str, ...] = (
    "purchase_rate",
    "order_value",
    "browse_intensity",
    "cart_conversion",
    "support_load",
    "escalation_share",
    "sentiment",
    "dormancy",
)
"""The clustering dimensions, in the order used by snapshots."""

ESCALATION_PRIOR = 0.1
"""Escalation share assumed for a customer without tickets (and the shrinkage target)."""
_PRIOR_TICKETS = 4.0  # the prior weighs as much as four tickets


FEATURE_NAMES: dict[str, str] = {
    "purchase_rate": "purchase frequency",
    "order_value": "average order value",
    "browse_intensity": "browsing",
    "cart_conversion": "cart-to-order conversion",
    "support_load": "support tickets",
    "escalation_share": "share of escalated tickets",
    "sentiment": "satisfaction (NPS/CSAT)",
    "dormancy": "time since last activity",
}
"""Human-readable names of the dimensions, used in reasons and labels."""


def _num(value: object) -> float | None:
    """Return ``value`` as a finite float, or None for None/bools/non-numbers/NaN."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def cluster_vector(features: Mapping[str, object]) -> dict[str, float]:
    """Return the clustering vector of one customer.

    Parameters
    ----------
    features
        The flat feature dict of ``models.features.read_features``. Missing keys
        and ``None`` values are allowed everywhere.

    Returns
    -------
    dict
        A subset of :data:`FEATURES` mapped to finite floats. Dimensions whose
        value is unknown are left out (the model treats them as average).

    Examples
    --------
    >>> v = cluster_vector({
    ...     "orders": 6, "orders_90d": 3, "T": 400, "avg_order_value": 120.0,
    ...     "product_views_30d": 12, "cart_adds": 10, "tickets": 1,
    ...     "tickets_90d": 0, "escalations": 0, "nps_avg": 10, "csat_avg": None,
    ...     "days_since_last_event": 4,
    ... })
    >>> {k: round(x, 3) for k, x in v.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'purchase_rate': 0.693, 'order_value': 4.796, 'browse_intensity': 2.565,
     'cart_conversion': 0.591, 'support_load': 0.0, 'escalation_share': 0.08,
     'sentiment': 1.0, 'dormancy': 1.609}

    A visitor who never bought has no order value:

    >>> sorted(cluster_vector({"product_views_30d": 40, "cart_adds": 9}))
    ... # doctest: +NORMALIZE_WHITESPACE
    ['browse_intensity', 'cart_conversion', 'escalation_share', 'purchase_rate',
     'sentiment', 'support_load']
    """
    f = features.get
    out: dict[str, float] = {}

    orders = _num(f("orders")) or 0.0
    tenure_days = _num(f("T"))
    orders_90d = _num(f("orders_90d"))
    if orders_90d is None:
        orders_90d = orders
    window = min(max((tenure_days or 0.0) + 1.0, 30.0), 90.0)
    out["purchase_rate"] = math.log1p(max(orders_90d, 0.0) * 30.0 / window)

    aov = _num(f("avg_order_value"))
    if aov is None and orders > 0:
        revenue = _num(f("revenue"))
        aov = revenue / orders if revenue is not None else None
    if orders > 0 and aov is not None:
        out["order_value"] = math.log1p(max(aov, 0.0))

    views = _num(f("product_views_30d"))
    out["browse_intensity"] = math.log1p(max(views or 0.0, 0.0))

    cart_adds = max(_num(f("cart_adds")) or 0.0, 0.0)
    if cart_adds > 0 or orders > 0:
        out["cart_conversion"] = min(1.0, (orders + 0.5) / (cart_adds + 1.0))

    tickets_90d = _num(f("tickets_90d"))
    if tickets_90d is None:
        tickets_90d = _num(f("tickets")) or 0.0
    out["support_load"] = math.log1p(max(tickets_90d, 0.0))

    tickets = max(_num(f("tickets")) or 0.0, 0.0)
    escalations = min(max(_num(f("escalations")) or 0.0, 0.0), tickets)
    out["escalation_share"] = (escalations + ESCALATION_PRIOR * _PRIOR_TICKETS) / (
        tickets + _PRIOR_TICKETS
    )

    scores = []
    nps = _num(f("nps_avg"))
    if nps is None:
        nps = _num(f("nps_last"))
    if nps is not None:
        scores.append((nps - 7.5) / 2.5)
    for name in ("csat_avg", "review_avg"):
        value = _num(f(name))
        if value is not None:
            scores.append((value - 3.5) / 1.5)
    out["sentiment"] = sum(scores) / len(scores) if scores else 0.0

    idle = _num(f("days_since_last_event"))
    if idle is not None:
        out["dormancy"] = math.log1p(max(idle, 0.0))

    return out
