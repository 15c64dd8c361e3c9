"""Simulator modes whose cluster structure is known: separated and overlapping personas.

The default :class:`~streams.tools.simulator.Simulation` mix is realistic but blurry:
its ``new_customer`` persona is a lifecycle stage rather than a behaviour, and
batch k-means with the true k only reaches an adjusted Rand index (ARI) of
about 0.64 on it, so "online is as good as batch" says little about whether
the model finds the groups. The modes here are built to test exactly that:

``separated``
    Five behaviours a marketer would name, each clearly different on a few
    clustering dimensions (``models.cluster_vector``): frequent big spenders,
    bargain hunters, window shoppers, support-heavy detractors and customers
    who lapse (all of them go silent in the first half of the period). Batch
    k-means with k = 5 on the customers' final vectors finds them (ARI > 0.9).
    About one event per customer and day, mostly browsing, as in the issue's
    reproduction (1,500 customers x 120 days = ~172k events).
``overlapping``
    The same five personas with every behaviour rate and score moved
    ``OVERLAP`` of the way (geometrically, for rates) towards the personas'
    average: the groups exist but their edges blur (batch ARI with the
    true k ~0.7).
``default``
    :data:`~streams.tools.simulator.PERSONAS` with the default mix.

Examples
--------
>>> sim = simulation("separated", customers=50, days=20, seed=3)
>>> sorted(set(t["persona"] for t in sim.ground_truth().values())) == sorted(SEPARATED)
True
>>> OVERLAPPING["window_shopper"].sessions_rate < SEPARATED["window_shopper"].sessions_rate
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from streams.tools.simulator import Persona, Simulation

__all__ = ["MODES", "OVERLAP", "OVERLAPPING", "SEPARATED", "blend", "simulation"]

MODES = ("default", "separated", "overlapping")
"""Names accepted by :func:`simulation` (and ``segmenter simulate --mode``)."""

_QUIET_BROWSE = {
    "page_view": 0.25,
    "product_view": 0.45,
    "search": 0.10,
    "add_to_cart": 0.10,
    "remove_from_cart": 0.02,
    "wishlist_add": 0.03,
    "checkout_start": 0.05,
}

SEPARATED: dict[str, Persona] = {
    "frequent_big_spender": Persona(
        purchase_rate=0.20,
        order_median=180.0,
        order_sigma=0.30,
        extra_items=1.5,
        categories=("electronics", "premium", "fashion", "home"),
        sessions_rate=0.15,
        actions_per_session=3.0,
        action_weights=_QUIET_BROWSE,
        ticket_rate=0.004,
        escalation_p=0.05,
        reopen_p=0.02,
        updates_mean=0.4,
        urgent_bias=0.0,
        nps_mean=9.5,
        nps_sd=0.5,
        csat_mean=4.8,
        review_mean=4.7,
        nps_rate=0.02,
        review_p=0.15,
        csat_p=0.5,
        plan_weights={"pro": 0.5, "enterprise": 0.5},
        age_mean=45.0,
        churn_propensity=0.0,
    ),
    "bargain_hunter": Persona(
        purchase_rate=0.15,
        order_median=14.0,
        order_sigma=0.35,
        extra_items=3.0,
        categories=("deals", "clearance", "groceries", "household", "outlet"),
        sessions_rate=0.20,
        actions_per_session=4.0,
        action_weights={
            "page_view": 0.20,
            "product_view": 0.20,
            "search": 0.40,
            "add_to_cart": 0.12,
            "remove_from_cart": 0.03,
            "wishlist_add": 0.01,
            "checkout_start": 0.04,
        },
        ticket_rate=0.008,
        escalation_p=0.10,
        reopen_p=0.05,
        updates_mean=0.5,
        urgent_bias=0.0,
        nps_mean=7.0,
        nps_sd=0.8,
        csat_mean=3.6,
        review_mean=3.4,
        nps_rate=0.02,
        review_p=0.05,
        csat_p=0.5,
        plan_weights={"free": 0.6, "basic": 0.4},
        age_mean=36.0,
        churn_propensity=0.0,
    ),
    "window_shopper": Persona(
        purchase_rate=0.005,
        order_median=40.0,
        order_sigma=0.5,
        extra_items=0.5,
        categories=("fashion", "electronics", "beauty", "toys", "home"),
        sessions_rate=0.30,
        actions_per_session=5.0,
        action_weights={
            "page_view": 0.20,
            "product_view": 0.45,
            "search": 0.08,
            "add_to_cart": 0.12,
            "remove_from_cart": 0.07,
            "wishlist_add": 0.07,
            "checkout_start": 0.01,
        },
        ticket_rate=0.003,
        escalation_p=0.05,
        reopen_p=0.02,
        updates_mean=0.3,
        urgent_bias=0.0,
        nps_mean=6.8,
        nps_sd=1.0,
        csat_mean=4.0,
        review_mean=3.8,
        nps_rate=0.015,
        review_p=0.05,
        csat_p=0.4,
        plan_weights={"free": 0.8, "basic": 0.2},
        age_mean=28.0,
        churn_propensity=0.0,
    ),
    "support_heavy_detractor": Persona(
        purchase_rate=0.05,
        order_median=60.0,
        order_sigma=0.45,
        extra_items=1.0,
        categories=("electronics", "home", "fashion"),
        sessions_rate=0.10,
        actions_per_session=3.0,
        action_weights=_QUIET_BROWSE,
        ticket_rate=0.08,
        escalation_p=0.40,
        reopen_p=0.30,
        updates_mean=1.5,
        urgent_bias=1.0,
        nps_mean=2.5,
        nps_sd=1.2,
        csat_mean=1.6,
        review_mean=1.8,
        nps_rate=0.04,
        review_p=0.20,
        csat_p=0.7,
        plan_weights={"free": 0.3, "basic": 0.4, "pro": 0.3},
        age_mean=41.0,
        churn_propensity=0.0,
    ),
    "lapsing_customer": Persona(
        purchase_rate=0.06,
        order_median=50.0,
        order_sigma=0.45,
        extra_items=1.0,
        categories=("fashion", "home", "beauty", "electronics"),
        sessions_rate=0.15,
        actions_per_session=4.0,
        action_weights=_QUIET_BROWSE,
        ticket_rate=0.01,
        escalation_p=0.10,
        reopen_p=0.05,
        updates_mean=0.5,
        urgent_bias=0.0,
        nps_mean=7.5,
        nps_sd=1.0,
        csat_mean=4.0,
        review_mean=3.9,
        nps_rate=0.02,
        review_p=0.08,
        csat_p=0.5,
        plan_weights={"free": 0.4, "basic": 0.4, "pro": 0.2},
        age_mean=34.0,
        churn_propensity=1.0,
        churn_by=0.5,  # every one of them is silent by the second half of the period
    ),
}
"""Five clearly different behaviours; only ``lapsing_customer`` churns (all of them)."""

# Rates blend geometrically (a rate twice the average is "as far" as half of it);
# scores and shapes linearly.
_RATES = (
    "purchase_rate",
    "order_median",
    "extra_items",
    "sessions_rate",
    "actions_per_session",
    "ticket_rate",
    "escalation_p",
    "reopen_p",
    "updates_mean",
    "nps_rate",
    "review_p",
)
_LINEAR = ("order_sigma", "urgent_bias", "nps_mean", "nps_sd", "csat_mean", "review_mean")

OVERLAP = 0.5
"""How far ``overlapping`` moves every persona towards the average (0 = separated)."""


def blend(catalogue: Mapping[str, Persona], overlap: float) -> dict[str, Persona]:
    """Move every persona's behaviour ``overlap`` of the way towards the personas' average.

    Browsing actions, categories, plans, churn and ages are kept, so the
    personas stay the same people, only less distinct.

    Examples
    --------
    >>> same = blend(SEPARATED, 0.0)
    >>> same["bargain_hunter"].order_median == SEPARATED["bargain_hunter"].order_median
    True
    >>> mixed = blend(SEPARATED, 1.0)
    >>> len({round(p.order_median, 6) for p in mixed.values()})
    1
    """
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must be within [0, 1], got {overlap}")
    personas = list(catalogue.values())
    target: dict[str, float] = {}
    for name in _RATES:
        values = [max(getattr(p, name), 1e-6) for p in personas]
        target[name] = math.exp(sum(math.log(v) for v in values) / len(values))
    for name in _LINEAR:
        target[name] = sum(getattr(p, name) for p in personas) / len(personas)
    out: dict[str, Persona] = {}
    for key, persona in catalogue.items():
        changes: dict[str, Any] = {}
        for name in _RATES:
            value = max(getattr(persona, name), 1e-6)
            changes[name] = value * (target[name] / value) ** overlap
        for name in _LINEAR:
            changes[name] = (1 - overlap) * getattr(persona, name) + overlap * target[name]
        out[key] = dataclasses.replace(persona, **changes)
    return out


OVERLAPPING: dict[str, Persona] = blend(SEPARATED, OVERLAP)
"""The separated personas, blurred: groups exist, their edges overlap."""


def simulation(mode: str, customers: int, days: int, seed: int = 42, **options: Any) -> Simulation:
    """A :class:`Simulation` of one of :data:`MODES` (``options`` go to the constructor)."""
    if mode == "default":
        return Simulation(customers=customers, days=days, seed=seed, **options)
    if mode == "separated":
        catalogue = SEPARATED
    elif mode == "overlapping":
        catalogue = OVERLAPPING
    else:
        raise ValueError(f"unknown simulator mode {mode!r}; known: {', '.join(MODES)}")
    options.setdefault("churn_fraction", 0.2)  # = the lapsers' share: every lapser lapses
    return Simulation(
        customers=customers,
        days=days,
        seed=seed,
        catalogue=catalogue,
        personas={name: 1.0 for name in catalogue},
        **options,
    )
