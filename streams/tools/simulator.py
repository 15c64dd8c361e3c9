"""Seeded synthetic customers with latent personas and churners.

The simulator is pure: it only *generates* events (dicts in the shape of
``shared/CONTRACT.md``) and serialised payloads; the ``segmenter simulate``
command produces them to Kafka. Everything is driven by :class:`random.Random`
instances seeded from ``seed``, so the same parameters always give the same
event sequence, byte for byte.

Events are generated one simulated day at a time: every active customer's
activity for the day is drawn, the day's events are sorted by event time and
yielded. Memory is therefore bounded by one day of events plus a few small
integers per customer, whatever ``days`` is.

See ``docs/simulator.md`` for the personas, the churn model and seasonality.

Examples
--------
>>> sim = Simulation(customers=20, days=10, seed=7)
>>> topic, event = next(iter(sim.events()))
>>> topic, sorted(event)[:3]
('profiles', ['attributes', 'customer_id', 'event_id'])
>>> sorted(set(t for t, _ in sim.events()))
['browsing', 'feedback', 'profiles', 'purchases', 'support']
>>> truth = sim.ground_truth()
>>> sorted(truth["c000000"])
['churn_day', 'churner', 'customer_id', 'persona', 'signup_day']
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from models.eventtime import MS_PER_DAY
from models.experiments import arm_of

__all__ = [
    "DEFAULT_PERSONA_WEIGHTS",
    "DEFAULT_START_MS",
    "FADE_DAYS",
    "PERSONAS",
    "TOPICS",
    "Campaign",
    "Persona",
    "Simulation",
    "format_rfc3339",
]

#: 2026-01-01T00:00:00Z in epoch milliseconds.
DEFAULT_START_MS = 1_767_225_600_000

#: Input topics the simulator writes, in a fixed order.
TOPICS = ("profiles", "purchases", "browsing", "support", "feedback")

#: Days before the churn day over which a churner's activity fades.
FADE_DAYS = 30

_MS_PER_HOUR = 3_600_000
_MS_PER_MIN = 60_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ACTIONS = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "wishlist_add",
    "checkout_start",
)
PLANS = ("free", "basic", "pro", "enterprise")
DEVICES = ("desktop", "ios", "android")
COMPANY_SIZES = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+")
INDUSTRIES = (
    "retail",
    "technology",
    "finance",
    "healthcare",
    "education",
    "manufacturing",
    "hospitality",
    "public_sector",
    "other",
)
# (ISO-2 country, region, currency, weight). Currencies are kept near parity with
# USD so that order values stay comparable across customers.
COUNTRIES = (
    ("US", "NA", "USD", 30),
    ("CA", "NA", "CAD", 6),
    ("GB", "EMEA", "GBP", 10),
    ("IE", "EMEA", "EUR", 2),
    ("DE", "EMEA", "EUR", 10),
    ("FR", "EMEA", "EUR", 8),
    ("ES", "EMEA", "EUR", 5),
    ("IT", "EMEA", "EUR", 5),
    ("NL", "EMEA", "EUR", 4),
    ("BE", "EMEA", "EUR", 2),
    ("AT", "EMEA", "EUR", 2),
    ("CH", "EMEA", "CHF", 2),
    ("AU", "APAC", "AUD", 6),
    ("NZ", "APAC", "NZD", 2),
    ("SG", "APAC", "SGD", 2),
)
_TICKET_CHANNELS = ("email", "chat", "phone", "web_form")
_PRIORITIES = ("low", "normal", "high", "urgent")
# Mean time to resolution (hours) by priority.
_RESOLVE_HOURS = {"low": 72.0, "normal": 36.0, "high": 16.0, "urgent": 6.0}
_GENERIC_PAGES = ("/", "/deals", "/new", "/account", "/help", "/orders")
_REVIEW_COMMENTS = {
    1: ("Terrible experience.", "Arrived broken.", "Never again."),
    2: ("Not as described.", "Slow delivery.", "Disappointing quality."),
    3: ("It is okay.", "Average.", "Does the job."),
    4: ("Good value.", "Happy with it.", "Nice quality."),
    5: ("Excellent!", "Love it.", "Exceeded expectations."),
}
# Relative activity by UTC hour of day (low at night, evening peak).
_HOUR_WEIGHTS = (
    0.3, 0.2, 0.15, 0.1, 0.1, 0.15, 0.3, 0.6, 0.8, 0.9, 1.0, 1.0,
    1.1, 1.0, 0.95, 0.95, 1.0, 1.1, 1.3, 1.5, 1.6, 1.4, 1.0, 0.6,
)  # fmt: skip


def _table(weights: Mapping[Any, float] | tuple[tuple[Any, float], ...], size: int = 512) -> tuple:
    """Expand weights into a lookup table so a draw is ``table[int(rand() * len)]``."""
    items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
    total = sum(w for _, w in items)
    out: list[Any] = []
    acc = 0.0
    for value, weight in items:
        acc += weight
        while len(out) < round(acc / total * size):
            out.append(value)
    return tuple(out)


_HOUR_TABLE = _table(tuple(enumerate(_HOUR_WEIGHTS)), 1000)


@dataclass(frozen=True)
class Persona:
    """Behavioural parameters of one latent persona (rates are per active day).

    Attributes
    ----------
    purchase_rate
        Expected orders per day.
    order_median, order_sigma
        Order value is log-normal with this median and log-scale sigma.
    extra_items
        Mean number of items beyond the first in an order.
    categories
        Product categories the persona shops and browses, most likely first.
    sessions_rate, actions_per_session
        Expected browsing sessions per day and mean actions in a session.
    action_weights
        Relative frequency of the browsing actions.
    ticket_rate, escalation_p, reopen_p, updates_mean
        Support tickets per day, probability a ticket is escalated or reopened,
        mean number of ``updated`` events per ticket.
    urgent_bias
        Shifts ticket priority towards ``high``/``urgent`` (0 = baseline).
    nps_mean, nps_sd, csat_mean, review_mean
        Centre and spread of feedback scores.
    nps_rate, review_p, csat_p
        NPS surveys per day; probability an order gets a review; probability a
        resolved ticket gets a CSAT answer.
    plan_weights
        Distribution of the initial subscription plan.
    age_mean
        Mean age of the persona's customers.
    churn_propensity
        Relative likelihood of being a churner (normalised so that the overall
        fraction matches ``Simulation.churn_fraction``).
    churn_by
        A churner's churn day is drawn before this fraction of the period
        (1.0: anywhere in it; 0.5: in its first half, so they have lapsed by
        the end).
    """

    purchase_rate: float
    order_median: float
    order_sigma: float
    extra_items: float
    categories: tuple[str, ...]
    sessions_rate: float
    actions_per_session: float
    action_weights: Mapping[str, float]
    ticket_rate: float
    escalation_p: float
    reopen_p: float
    updates_mean: float
    urgent_bias: float
    nps_mean: float
    nps_sd: float
    csat_mean: float
    review_mean: float
    nps_rate: float
    review_p: float
    csat_p: float
    plan_weights: Mapping[str, float]
    age_mean: float
    churn_propensity: float
    churn_by: float = 1.0

    def expected_events_per_day(self) -> float:
        """Rough mean number of events an active customer emits per day.

        Examples
        --------
        >>> 1 < PERSONAS["loyal_high_spender"].expected_events_per_day() < 5
        True
        """
        purchase = self.purchase_rate * (1.0 + 0.55 * 3.5 + self.review_p)
        # Session length is 1 + floor(exponential), about half an action short.
        browse = self.sessions_rate * (self.actions_per_session - 0.5)
        ticket = self.ticket_rate * (
            2.0 + self.updates_mean + self.escalation_p + 2.0 * self.reopen_p + self.csat_p
        )
        return purchase + browse + ticket + self.nps_rate + 0.003


#: The five latent personas. Keep them separable in purchase frequency, order
#: value, browsing intensity, support load and NPS.
PERSONAS: dict[str, Persona] = {
    "bargain_hunter": Persona(
        purchase_rate=0.45,
        order_median=22.0,
        order_sigma=0.45,
        extra_items=2.0,
        categories=("deals", "clearance", "groceries", "household", "outlet"),
        sessions_rate=1.1,
        actions_per_session=7.0,
        action_weights={
            "page_view": 0.22,
            "product_view": 0.25,
            "search": 0.30,
            "add_to_cart": 0.10,
            "remove_from_cart": 0.05,
            "wishlist_add": 0.03,
            "checkout_start": 0.05,
        },
        ticket_rate=0.02,
        escalation_p=0.10,
        reopen_p=0.05,
        updates_mean=0.6,
        urgent_bias=0.0,
        nps_mean=7.5,
        nps_sd=0.7,
        csat_mean=3.8,
        review_mean=3.6,
        nps_rate=0.03,
        review_p=0.10,
        csat_p=0.5,
        plan_weights={"free": 0.5, "basic": 0.4, "pro": 0.1},
        age_mean=36.0,
        churn_propensity=1.0,
    ),
    "loyal_high_spender": Persona(
        purchase_rate=0.16,
        order_median=170.0,
        order_sigma=0.35,
        extra_items=1.5,
        categories=("electronics", "fashion", "home", "beauty", "premium"),
        sessions_rate=0.45,
        actions_per_session=4.0,
        action_weights={
            "page_view": 0.25,
            "product_view": 0.40,
            "search": 0.08,
            "add_to_cart": 0.15,
            "remove_from_cart": 0.02,
            "wishlist_add": 0.05,
            "checkout_start": 0.05,
        },
        ticket_rate=0.008,
        escalation_p=0.05,
        reopen_p=0.02,
        updates_mean=0.5,
        urgent_bias=0.0,
        nps_mean=9.4,
        nps_sd=0.6,
        csat_mean=4.7,
        review_mean=4.6,
        nps_rate=0.03,
        review_p=0.15,
        csat_p=0.5,
        plan_weights={"basic": 0.1, "pro": 0.5, "enterprise": 0.4},
        age_mean=46.0,
        churn_propensity=0.4,
    ),
    "window_shopper": Persona(
        purchase_rate=0.025,
        order_median=45.0,
        order_sigma=0.5,
        extra_items=0.5,
        categories=("fashion", "electronics", "home", "beauty", "toys"),
        sessions_rate=1.6,
        actions_per_session=8.0,
        action_weights={
            "page_view": 0.25,
            "product_view": 0.30,
            "search": 0.10,
            "add_to_cart": 0.14,
            "remove_from_cart": 0.09,
            "wishlist_add": 0.09,
            "checkout_start": 0.03,
        },
        ticket_rate=0.006,
        escalation_p=0.05,
        reopen_p=0.03,
        updates_mean=0.4,
        urgent_bias=0.0,
        nps_mean=6.8,
        nps_sd=1.0,
        csat_mean=4.0,
        review_mean=3.8,
        nps_rate=0.02,
        review_p=0.05,
        csat_p=0.4,
        plan_weights={"free": 0.7, "basic": 0.25, "pro": 0.05},
        age_mean=28.0,
        churn_propensity=1.2,
    ),
    "support_heavy_detractor": Persona(
        purchase_rate=0.10,
        order_median=60.0,
        order_sigma=0.5,
        extra_items=1.0,
        categories=("electronics", "home", "appliances", "fashion"),
        sessions_rate=0.4,
        actions_per_session=4.0,
        action_weights={
            "page_view": 0.35,
            "product_view": 0.30,
            "search": 0.12,
            "add_to_cart": 0.10,
            "remove_from_cart": 0.05,
            "wishlist_add": 0.03,
            "checkout_start": 0.05,
        },
        ticket_rate=0.18,
        escalation_p=0.35,
        reopen_p=0.25,
        updates_mean=1.5,
        urgent_bias=1.0,
        nps_mean=3.0,
        nps_sd=1.6,
        csat_mean=1.8,
        review_mean=2.0,
        nps_rate=0.05,
        review_p=0.20,
        csat_p=0.7,
        plan_weights={"free": 0.2, "basic": 0.4, "pro": 0.4},
        age_mean=41.0,
        churn_propensity=2.0,
    ),
    "new_customer": Persona(
        purchase_rate=0.12,
        order_median=50.0,
        order_sigma=0.5,
        extra_items=1.0,
        categories=("fashion", "home", "beauty", "electronics", "deals"),
        sessions_rate=0.9,
        actions_per_session=5.0,
        action_weights={
            "page_view": 0.30,
            "product_view": 0.30,
            "search": 0.15,
            "add_to_cart": 0.10,
            "remove_from_cart": 0.04,
            "wishlist_add": 0.05,
            "checkout_start": 0.06,
        },
        ticket_rate=0.03,
        escalation_p=0.10,
        reopen_p=0.05,
        updates_mean=0.6,
        urgent_bias=0.0,
        nps_mean=7.8,
        nps_sd=1.5,
        csat_mean=4.1,
        review_mean=4.0,
        nps_rate=0.03,
        review_p=0.10,
        csat_p=0.5,
        plan_weights={"free": 0.6, "basic": 0.3, "pro": 0.1},
        age_mean=32.0,
        churn_propensity=1.2,
    ),
}

#: Default mix of personas in the customer base.
DEFAULT_PERSONA_WEIGHTS: dict[str, float] = {
    "bargain_hunter": 0.25,
    "loyal_high_spender": 0.20,
    "window_shopper": 0.20,
    "support_heavy_detractor": 0.15,
    "new_customer": 0.20,
}

# Monthly seasonality: (purchase factor, browse factor).
_MONTH_FACTORS = {
    1: (0.85, 0.9),
    2: (0.95, 0.95),
    11: (1.35, 1.2),
    12: (1.5, 1.3),
}


def _season(day_start_ms: int) -> tuple[float, float]:
    """Return (purchase factor, browse factor) for the UTC day starting at ``day_start_ms``.

    Weekends browse 35 % more and buy 10 % more; November and December get a
    holiday bump (Black Friday week and 1-24 December the strongest), January
    a post-holiday dip.

    Examples
    --------
    >>> _season(DEFAULT_START_MS)  # Thursday 1 January 2026
    (0.8245, 0.81)
    """
    date = _EPOCH + timedelta(milliseconds=day_start_ms)
    purchase, browse = _MONTH_FACTORS.get(date.month, (1.0, 1.0))
    if date.month == 11 and date.day >= 23:
        purchase, browse = 2.2, 1.5
    elif date.month == 12 and date.day <= 24:
        purchase, browse = 1.8, 1.45
    if date.weekday() >= 5:
        purchase, browse = purchase * 1.1, browse * 1.35
    else:
        purchase, browse = purchase * 0.97, browse * 0.9
    return round(purchase, 4), round(browse, 4)


def format_rfc3339(ts_ms: int, offset_minutes: int = 0) -> str:
    """Format epoch milliseconds as RFC 3339 local time with the given UTC offset.

    Examples
    --------
    >>> format_rfc3339(1700000000500)
    '2023-11-14T22:13:20.500Z'
    >>> format_rfc3339(1700000000500, 330)
    '2023-11-15T03:43:20.500+05:30'
    >>> format_rfc3339(1700000000500, -300)
    '2023-11-14T17:13:20.500-05:00'
    """
    local = ts_ms + offset_minutes * _MS_PER_MIN
    seconds, millis = divmod(local, 1000)
    t = time.gmtime(seconds)
    text = (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{millis:03d}"
    )
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


_RFC_OFFSETS = (0, 0, 60, 120, -300, -240, 330, 540, 600, -180)


def _poisson(rand: Any, lam: float) -> int:
    """Draw a Poisson variate (Knuth's method; normal approximation above 30)."""
    if lam <= 0.0:
        return 0
    if lam > 30.0:
        return max(0, round(lam + math.sqrt(lam) * _std_normal(rand)))
    limit = math.exp(-lam)
    k = 0
    p = rand()
    while p > limit:
        k += 1
        p *= rand()
    return k


def _std_normal(rand: Any) -> float:
    # Box-Muller with our own uniform source keeps everything on one stream.
    return math.sqrt(-2.0 * math.log(1.0 - rand())) * math.cos(2.0 * math.pi * rand())


class _Customer(NamedTuple):
    customer_id: str
    persona: str
    signup_day: int
    churn_day: int | None
    signup_ms: int
    activity: float
    spend: float
    country: int
    age: int
    company_size: int
    industry: int
    plan: int
    device: int


class _CustomerSpec(NamedTuple):
    """Per-customer constants of the day loop, looked up once per run."""

    cust: _Customer
    persona: Persona
    cid: str
    #: First day without events: the churn day, or the end of the simulation.
    limit_day: int
    churner: bool
    signup_day: int
    activity: float
    platforms: tuple[str, ...]
    n_platforms: int
    categories: tuple[str, ...]
    n_cat: int
    currency: str
    #: The persona's action table (:func:`_action_table`): action, page kind, fixed page.
    actions: tuple[str, ...]
    kinds: tuple[int, ...]
    fixed_pages: tuple[str, ...]
    #: 32 categories indexed by 5 random bits, the favourite most often.
    category_table: tuple[str, ...]
    #: Log of the customer's median order value.
    mu: float


#: Where one day's events go: three parallel lists (stamps, topics, events).
_Batch = tuple[list[int], list[str], list[dict[str, Any]]]
#: Events beyond the current day, by day index.
_Future = dict[int, list[tuple[int, str, dict[str, Any]]]]
#: Schedules an event at any time: today's batch, a later day, or nowhere.
_Later = Callable[[int, str, dict[str, Any]], None]


class _Today(NamedTuple):
    """One customer's day being drawn: its time window, random sources and sinks."""

    day_start: int
    day_end: int
    #: Earliest moment of today's activity (after the profile on a first day).
    lo: int
    rand: Callable[[], float]
    bits: Callable[[int], int]
    batch: _Batch
    future: _Future
    later: _Later

    def session_start(self) -> int:
        """Draw when a session starts: by the hour weights, uniform after a first profile."""
        rand = self.rand
        if self.lo != self.day_start:
            return self.lo + int(rand() * (self.day_end - self.lo))
        return (
            self.day_start
            + _HOUR_TABLE[int(rand() * len(_HOUR_TABLE))] * _MS_PER_HOUR
            + int(rand() * _MS_PER_HOUR)
        )

    def any_time(self) -> int:
        """Draw a moment uniformly within today's window."""
        return self.lo + int(self.rand() * (self.day_end - self.lo))


_PERSONA_PLAN_TABLES = {name: _table(p.plan_weights, 100) for name, p in PERSONAS.items()}


def _action_table(
    weights: Mapping[str, float],
) -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
    """Expand action weights into parallel (action, page kind, fixed page) tables.

    Page kinds: 0 product page, 1 search page, 2 category page, 3 the fixed page.
    Half of the page views go to a category page, the rest to generic pages.
    """
    fixed = {
        "add_to_cart": "/cart",
        "remove_from_cart": "/cart",
        "wishlist_add": "/wishlist",
        "checkout_start": "/checkout",
    }
    entries: list[tuple[tuple[str, int, str], float]] = []
    for action, weight in weights.items():
        if action == "product_view":
            entries.append(((action, 0, ""), weight))
        elif action == "search":
            entries.append(((action, 1, ""), weight))
        elif action == "page_view":
            entries.append(((action, 2, ""), weight / 2))
            for page in _GENERIC_PAGES:
                entries.append(((action, 3, page), weight / 2 / len(_GENERIC_PAGES)))
        else:
            entries.append(((action, 3, fixed.get(action, "/")), weight))
    table = _table(tuple(entries), 512)  # indexed with 9 random bits
    return (
        tuple(e[0] for e in table),
        tuple(e[1] for e in table),
        tuple(e[2] for e in table),
    )


def _category_table(categories: tuple[str, ...]) -> tuple[str, ...]:
    """32 entries (5 random bits) with linearly decreasing weights: first is favourite."""
    count = len(categories)
    return _table(tuple((c, float(count - i)) for i, c in enumerate(categories)), 32)


_PERSONA_CATEGORY_TABLES = {name: _category_table(p.categories) for name, p in PERSONAS.items()}
_PERSONA_ACTION_TABLES = {name: _action_table(p.action_weights) for name, p in PERSONAS.items()}
_ALL_CATEGORIES = sorted({c for p in PERSONAS.values() for c in p.categories})
_SEARCH_PAGES = {c: f"/search?q={c}" for c in _ALL_CATEGORIES}
_CATEGORY_PAGES = {c: f"/c/{c}" for c in _ALL_CATEGORIES}
# Quantised exponential gaps (mean ~43 s) between actions of a session.
_GAP_TABLE = tuple(3000 + int(-math.log(1.0 - (i + 0.5) / 1024) * 40_000) for i in range(1024))
_COUNTRY_TABLE = _table(tuple((i, c[3]) for i, c in enumerate(COUNTRIES)), 200)
_SIZE_TABLE = _table(((0, 30), (1, 25), (2, 18), (3, 14), (4, 8), (5, 5)), 100)
_DEVICE_TABLE = _table(((0, 45), (1, 30), (2, 25)), 100)
_PLATFORM_BY_DEVICE = (("web",), ("ios", "ios", "ios", "web"), ("android", "android", "web"))


@dataclass(frozen=True)
class Campaign:
    """An outreach campaign with a known effect, to check experiment read-outs.

    Every customer's first purchase in the simulation puts them into the
    lifecycle segment ``new`` (the worker sees no earlier history). The
    campaign contacts those in the *treatment* arm of ``experiment`` (arms as
    the worker draws them, :func:`models.experiments.arm_of`); each responds
    with probability ``response_rate`` by an extra purchase of ``amount`` on one
    of the ``window_days - 1`` days after the first purchase (inside the
    experiment's outcome window). Customers in the holdout never respond. The
    responses use random draws of their own, so every other event is the same
    as without the campaign.

    Examples
    --------
    >>> Campaign("welcome", holdout=0.3, response_rate=0.5, amount=150.0).effect
    75.0
    """

    experiment: str
    holdout: float
    response_rate: float = 0.5
    amount: float = 150.0
    window_days: int = 14

    @property
    def effect(self) -> float:
        """The true uplift of revenue per customer in the outcome window."""
        return self.response_rate * self.amount


@dataclass
class Simulation:
    """A seeded population of synthetic customers and the events they emit.

    Parameters
    ----------
    customers
        Number of customers (ids ``c000000`` … in order).
    days
        Length of the simulated period in days, starting at ``start_ms``.
    seed
        Seed for every random draw; identical parameters give identical output.
    start_ms
        Start of day 0 in epoch milliseconds (default 2026-01-01T00:00:00Z).
    churn_fraction
        Expected fraction of customers who churn during the period.
    personas
        Weights of the latent personas (names from ``catalogue``); missing
        names get weight 0.
    rfc3339_fraction
        Fraction of events whose ``ts`` is an RFC 3339 string with a UTC offset
        instead of integer epoch milliseconds.
    bad_fraction
        Fraction of payloads from :meth:`raw_events` that are deliberately broken
        (invalid JSON, missing field, negative amount, bad ``ts``, non-UTF-8).
    duplicate_fraction
        Probability that :meth:`raw_events` re-sends a recent payload verbatim
        after a clean one (same ``event_id``).
    campaign
        An outreach campaign to new customers with a known effect (:class:`Campaign`).
    catalogue
        The personas to draw from (default :data:`PERSONAS`); see
        :mod:`streams.tools.persona_modes` for the separated and overlapping sets.

    Examples
    --------
    >>> sim = Simulation(customers=5, days=3, seed=1)
    >>> list(sim.events())[:2] == list(sim.events())[:2]
    True
    >>> sim.ground_truth()["c000004"]["persona"] in PERSONAS
    True
    """

    customers: int
    days: int
    seed: int = 42
    start_ms: int = DEFAULT_START_MS
    churn_fraction: float = 0.2
    personas: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PERSONA_WEIGHTS))
    rfc3339_fraction: float = 0.0
    bad_fraction: float = 0.0
    duplicate_fraction: float = 0.0
    campaign: Campaign | None = None
    catalogue: Mapping[str, Persona] | None = None

    def __post_init__(self) -> None:
        if self.customers < 0:
            raise ValueError("customers must be >= 0")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        for name in ("churn_fraction", "rfc3339_fraction", "bad_fraction", "duplicate_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        catalogue = PERSONAS if self.catalogue is None else self.catalogue
        unknown = set(self.personas) - set(catalogue)
        if unknown:
            raise ValueError(f"unknown personas {sorted(unknown)}; known: {sorted(catalogue)}")
        unknown_categories = {c for p in catalogue.values() for c in p.categories} - set(
            _ALL_CATEGORIES
        )
        if unknown_categories:
            raise ValueError(f"unknown categories {sorted(unknown_categories)}")
        self._catalogue: Mapping[str, Persona] = catalogue
        if catalogue is PERSONAS:
            self._tables = (_PERSONA_PLAN_TABLES, _PERSONA_ACTION_TABLES, _PERSONA_CATEGORY_TABLES)
        else:
            self._tables = (
                {n: _table(p.plan_weights, 100) for n, p in catalogue.items()},
                {n: _action_table(p.action_weights) for n, p in catalogue.items()},
                {n: _category_table(p.categories) for n, p in catalogue.items()},
            )
        if any(w < 0 for w in self.personas.values()) or sum(self.personas.values()) <= 0:
            raise ValueError("persona weights must be >= 0 with a positive sum")
        self._roster_cache: tuple[tuple[Any, ...], list[_Customer]] | None = None

    # ------------------------------------------------------------------ roster
    def _roster(self) -> list[_Customer]:
        key = (
            self.customers,
            self.days,
            self.seed,
            self.start_ms,
            self.churn_fraction,
            tuple(sorted(self.personas.items())),
        )
        if self._roster_cache is not None and self._roster_cache[0] == key:
            return self._roster_cache[1]
        roster = self._build_roster()
        self._roster_cache = (key, roster)
        return roster

    def _build_roster(self) -> list[_Customer]:
        rng = random.Random(f"segmenter-simulator-roster-{self.seed}")
        rand = rng.random
        catalogue = self._catalogue
        plan_tables = self._tables[0]
        names = [n for n in catalogue if self.personas.get(n, 0.0) > 0]
        weights = [self.personas[n] for n in names]
        total = sum(weights)
        cum = list(_cumulative(weights))
        # Churn probability per persona, scaled so the overall expectation is
        # churn_fraction (capped at 1).
        mean_prop = sum(
            w / total * catalogue[n].churn_propensity for n, w in zip(names, weights, strict=True)
        )
        churn_p = {
            n: min(1.0, self.churn_fraction * catalogue[n].churn_propensity / mean_prop)
            if mean_prop > 0
            else 0.0
            for n in names
        }
        days = self.days
        out: list[_Customer] = []
        for i in range(self.customers):
            name = names[min(bisect.bisect_right(cum, rand() * total), len(names) - 1)]
            persona = catalogue[name]
            if name == "new_customer":
                signup_day = rng.randrange(1, days) if days > 1 else 0
                hour = _HOUR_TABLE[int(rand() * len(_HOUR_TABLE))]
                signup_ms = (
                    self.start_ms
                    + signup_day * MS_PER_DAY
                    + hour * _MS_PER_HOUR
                    + int(rand() * _MS_PER_HOUR)
                )
            else:
                signup_day = -rng.randint(30, 1500)
                signup_ms = self.start_ms + signup_day * MS_PER_DAY + int(rand() * MS_PER_DAY)
            churn_day: int | None = None
            draw = rand()
            earliest = max(signup_day, 0) + 7
            latest = days - 1 if persona.churn_by >= 1.0 else int(days * persona.churn_by) - 1
            if draw < churn_p[name] and earliest <= latest:
                churn_day = rng.randint(earliest, latest)
            out.append(
                _Customer(
                    customer_id=f"c{i:06d}",
                    persona=name,
                    signup_day=signup_day,
                    churn_day=churn_day,
                    signup_ms=signup_ms,
                    activity=rng.lognormvariate(0.0, 0.25),
                    spend=rng.lognormvariate(0.0, 0.15),
                    country=_COUNTRY_TABLE[int(rand() * len(_COUNTRY_TABLE))],
                    age=max(18, min(85, round(rng.gauss(persona.age_mean, 9.0)))),
                    company_size=_SIZE_TABLE[int(rand() * len(_SIZE_TABLE))],
                    industry=int(rand() * len(INDUSTRIES)),
                    plan=PLANS.index(plan_tables[name][int(rand() * len(plan_tables[name]))]),
                    device=_DEVICE_TABLE[int(rand() * len(_DEVICE_TABLE))],
                )
            )
        return out

    # ------------------------------------------------------------ ground truth
    def ground_truth(self) -> dict[str, dict[str, Any]]:
        """Return the latent truth per customer id.

        Each value holds ``customer_id``, ``persona``, ``churner`` (bool),
        ``churn_day`` (day index relative to ``start_ms`` from which the customer
        is silent, or ``None``) and ``signup_day`` (negative for customers who
        signed up before the period).

        Examples
        --------
        >>> truth = Simulation(customers=3, days=30, seed=3).ground_truth()
        >>> list(truth)
        ['c000000', 'c000001', 'c000002']
        >>> all(t["churner"] == (t["churn_day"] is not None) for t in truth.values())
        True
        """
        return {
            c.customer_id: {
                "customer_id": c.customer_id,
                "persona": c.persona,
                "churner": c.churn_day is not None,
                "churn_day": c.churn_day,
                "signup_day": c.signup_day,
            }
            for c in self._roster()
        }

    def write_ground_truth(self, path: str | Path) -> int:
        """Write :meth:`ground_truth` as JSON Lines (one customer a line); return the count.

        Examples
        --------
        >>> import os, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     Simulation(customers=4, days=5).write_ground_truth(os.path.join(tmp, "t.jsonl"))
        4
        """
        truth = self.ground_truth()
        with open(path, "wb") as fh:
            for record in truth.values():
                fh.write(orjson.dumps(record) + b"\n")
        return len(truth)

    def count_hint(self) -> int:
        """Rough expected number of events from :meth:`events` (for progress bars).

        Examples
        --------
        >>> sim = Simulation(customers=200, days=20, seed=5)
        >>> 0.7 < sim.count_hint() / sum(1 for _ in sim.events()) < 1.3
        True
        """
        total = 0.0
        days = self.days
        # Browsing dominates the volume: scale by its mean seasonal factor.
        season = sum(_season(self.start_ms + d * MS_PER_DAY)[1] for d in range(days)) / days
        for c in self._roster():
            persona = self._catalogue[c.persona]
            first = max(c.signup_day, 0)
            last = days if c.churn_day is None else c.churn_day
            active = float(max(0, last - first))
            if c.churn_day is not None:
                # Roughly half the activity of the fading window is lost.
                active -= min(active, FADE_DAYS) * 0.5
            if c.persona == "new_customer":
                active += min(7, active) * 0.5  # honeymoon boost
            total += 1 + active * persona.expected_events_per_day() * c.activity * season
        return round(total)

    # ------------------------------------------------------------------ events
    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(topic, event)`` pairs in non-decreasing event-time order.

        Events follow the input-topic contract: ``event_id``, ``customer_id``,
        ``ts`` (int epoch ms, or RFC 3339 with offset for ``rfc3339_fraction`` of
        them) plus the topic's fields. Generation is lazy, one day at a time.

        Examples
        --------
        >>> from models.eventtime import parse_ts
        >>> stamps = [parse_ts(e["ts"]) for _, e in Simulation(customers=30, days=5).events()]
        >>> stamps == sorted(stamps)
        True
        """
        roster = self._roster()
        self._first_bought: set[str] = set()  # (the campaign's targets)
        rng = random.Random(f"segmenter-simulator-events-{self.seed}")
        ts_rng = random.Random(f"segmenter-simulator-ts-{self.seed}")
        rand = rng.random
        bits = rng.getrandbits
        ts_rand = ts_rng.random
        rfc_fraction = self.rfc3339_fraction
        start = self.start_ms
        days = self.days
        counters = [0] * len(roster)
        plans = [c.plan for c in roster]
        specs = [self._spec(c) for c in roster]
        first_days = [max(0, c.signup_day) for c in roster]
        end_days = [days if c.churn_day is None else c.churn_day for c in roster]
        future: dict[int, list[tuple[int, str, dict[str, Any]]]] = {}
        for day in range(days):
            day_start = start + day * MS_PER_DAY
            season = _season(day_start)
            # The day's events in three parallel lists: no per-event wrapper
            # tuples that would keep the cyclic garbage collector busy.
            stamps: list[int] = []
            topics: list[str] = []
            payloads: list[dict[str, Any]] = []
            for ts, topic, event in future.pop(day, ()):
                stamps.append(ts)
                topics.append(topic)
                payloads.append(event)
            batch = (stamps, topics, payloads)
            customer_day = self._customer_day
            for idx, spec in enumerate(specs):
                if first_days[idx] <= day < end_days[idx]:
                    counters[idx] = customer_day(
                        spec,
                        idx,
                        day,
                        day_start,
                        season,
                        rand,
                        bits,
                        batch,
                        future,
                        counters[idx],
                        plans,
                    )
            # Stable sort by event time: deterministic order for equal stamps.
            order = sorted(range(len(stamps)), key=stamps.__getitem__)
            if rfc_fraction > 0.0:
                for i in order:
                    event = payloads[i]
                    if ts_rand() < rfc_fraction:
                        offset = _RFC_OFFSETS[int(ts_rand() * len(_RFC_OFFSETS))]
                        event["ts"] = format_rfc3339(event["ts"], offset)
                    yield topics[i], event
            else:
                yield from zip(
                    map(topics.__getitem__, order), map(payloads.__getitem__, order), strict=True
                )

    def _attributes(self, cust: _Customer, plan: int) -> dict[str, Any]:
        country, region, currency, _ = COUNTRIES[cust.country]
        return {
            "country": country,
            "region": region,
            "currency": currency,
            "age": cust.age,
            "company_size": COMPANY_SIZES[cust.company_size],
            "industry": INDUSTRIES[cust.industry],
            "plan": PLANS[plan],
            "device": DEVICES[cust.device],
            "signup_ts": cust.signup_ms,
        }

    def _spec(self, cust: _Customer) -> _CustomerSpec:
        """Per-customer constants of the hot loop, looked up once per run."""
        persona = self._catalogue[cust.persona]
        actions, kinds, fixed_pages = self._tables[1][cust.persona]
        platforms = _PLATFORM_BY_DEVICE[cust.device]
        return _CustomerSpec(
            cust=cust,
            persona=persona,
            cid=cust.customer_id,
            limit_day=self.days if cust.churn_day is None else cust.churn_day,
            churner=cust.churn_day is not None,
            signup_day=cust.signup_day,
            activity=cust.activity,
            platforms=platforms,
            n_platforms=len(platforms),
            categories=persona.categories,
            n_cat=len(persona.categories),
            currency=COUNTRIES[cust.country][2],
            actions=actions,
            kinds=kinds,
            fixed_pages=fixed_pages,
            category_table=self._tables[2][cust.persona],
            mu=math.log(persona.order_median * cust.spend),
        )

    def _customer_day(
        self,
        spec: _CustomerSpec,
        idx: int,
        day: int,
        day_start: int,
        season: tuple[float, float],
        rand: Callable[[], float],
        bits: Callable[[int], int],
        batch: _Batch,
        future: _Future,
        n: int,
        plans: list[int],
    ) -> int:
        """Draw one customer's activity for one day; return the updated id counter.

        The steps draw from the same random stream in a fixed order (profile,
        browsing, purchases, rare events), which is what keeps the output of
        a seed identical: reordering them changes every later event.
        """
        day_end = day_start + MS_PER_DAY
        later = _scheduler(batch, future, self.start_ms, day_end, spec.limit_day)
        today = _Today(day_start, day_end, day_start, rand, bits, batch, future, later)
        signup_day = spec.signup_day
        if day == signup_day or (day == 0 and signup_day < 0):
            n, profile_ts = self._first_profile(spec, idx, today, plans, n)
            today = today._replace(lo=profile_ts + 1)
        act, gloom = _mood(spec, day)
        season_purchase, season_browse = season
        n = _browse(spec, today, act, season_browse, n)
        n = self._purchases(spec, today, act, season_purchase, gloom, n)
        return self._rare_events(spec, idx, today, gloom, plans, n)

    def _first_profile(
        self, spec: _CustomerSpec, idx: int, today: _Today, plans: list[int], n: int
    ) -> tuple[int, int]:
        """Emit the profile of the customer's first day; return the counter and its time.

        A new customer's profile comes at sign-up, an existing customer's in
        the first hour of the simulation.
        """
        cid = spec.cid
        if spec.signup_day >= 0:
            profile_ts = spec.cust.signup_ms
        else:
            profile_ts = today.day_start + int(today.rand() * _MS_PER_HOUR)
        n += 1
        today.later(
            profile_ts,
            "profiles",
            {
                "event_id": f"pr-{cid}-{n}",
                "customer_id": cid,
                "ts": profile_ts,
                "attributes": self._attributes(spec.cust, plans[idx]),
            },
        )
        return n, profile_ts

    def _purchases(
        self,
        spec: _CustomerSpec,
        today: _Today,
        act: float,
        season_purchase: float,
        gloom: float,
        n: int,
    ) -> int:
        """Draw the day's purchases, often preceded by a short checkout session.

        Each purchase may bring a review a few days later and, for a first
        purchase under a campaign, the campaign's response.
        """
        persona = spec.persona
        cid = spec.cid
        rand = today.rand
        later = today.later
        platforms = spec.platforms
        mu = spec.mu
        if season_purchase > 1.2:
            mu += 0.0953  # holiday baskets are ~10 % larger
        for _ in range(_poisson(rand, persona.purchase_rate * act * season_purchase)):
            ts = today.session_start()
            category = spec.categories[int(rand() * rand() * spec.n_cat)]
            platform = platforms[int(rand() * spec.n_platforms)]
            if rand() < 0.55:
                n, ts = _checkout_session(spec, today, ts, category, platform, n)
            channel = ("store" if rand() < 0.08 else "web") if platform == "web" else "app"
            n += 1
            amount = round(math.exp(mu + persona.order_sigma * _std_normal(rand)), 2)
            later(
                ts,
                "purchases",
                {
                    "event_id": f"pu-{cid}-{n}",
                    "customer_id": cid,
                    "ts": ts,
                    "order_id": f"o-{cid}-{n}",
                    "amount": amount,
                    "currency": spec.currency,
                    "items": 1 + min(30, int(-math.log(1.0 - rand()) * persona.extra_items)),
                    "category": category,
                    "channel": channel,
                },
            )
            if self.campaign is not None and cid not in self._first_bought:
                self._first_bought.add(cid)
                self._respond(self.campaign, cid, ts, spec.currency, today.future)
            if rand() < persona.review_p * (1.0 + gloom):
                n = _review(spec, today, ts, gloom, n)
        return n

    def _rare_events(
        self,
        spec: _CustomerSpec,
        idx: int,
        today: _Today,
        gloom: float,
        plans: list[int],
        n: int,
    ) -> int:
        """Draw the day's support tickets, NPS answers and plan changes.

        They are rare: one Poisson draw for their superposition, then the kind
        of each, saves two draws per customer-day.
        """
        persona = spec.persona
        rand = today.rand
        ticket_lam = persona.ticket_rate * spec.activity * (1.0 + 3.0 * gloom)
        nps_lam = ticket_lam + persona.nps_rate * (1.0 + 1.5 * gloom)
        rare_lam = nps_lam + 0.003 * (1.0 + 5.0 * gloom)
        lo = today.lo
        span = today.day_end - lo
        for _ in range(_poisson(rand, rare_lam)):
            u = rand() * rare_lam
            if u < ticket_lam:
                n = self._ticket(spec.cust, persona, n, lo, span, gloom, rand, today.later)
                continue
            ts = today.any_time()
            if u >= nps_lam:
                n = self._plan_change(spec.cust, idx, n, ts, gloom, rand, plans, today.later)
                continue
            n = _nps(spec, today, ts, gloom, n)
        return n

    def _respond(
        self,
        campaign: Campaign,
        cid: str,
        first_ts: int,
        currency: str,
        future: dict[int, list[tuple[int, str, dict[str, Any]]]],
    ) -> None:
        """The campaign's extra purchase of a treated customer who responds."""
        if arm_of(campaign.experiment, cid, campaign.holdout) != "treatment":
            return
        draw = random.Random(f"segmenter-simulator-campaign-{self.seed}-{cid}").random
        if draw() >= campaign.response_rate:
            return
        day = first_ts // MS_PER_DAY + 1 + int(draw() * (campaign.window_days - 1))
        ts = day * MS_PER_DAY + int(draw() * MS_PER_DAY)
        target = (ts - self.start_ms) // MS_PER_DAY
        if target < self.days:
            future.setdefault(target, []).append(
                (
                    ts,
                    "purchases",
                    {
                        "event_id": f"cp-{cid}",
                        "customer_id": cid,
                        "ts": ts,
                        "order_id": f"co-{cid}",
                        "amount": campaign.amount,
                        "currency": currency,
                        "items": 1,
                        "channel": "campaign",
                    },
                )
            )

    def _plan_change(
        self,
        cust: _Customer,
        idx: int,
        n: int,
        ts: int,
        gloom: float,
        rand: Any,
        plans: list[int],
        later: Any,
    ) -> int:
        """Occasionally move the customer one plan up or down (down while fading)."""
        old = plans[idx]
        if gloom > 0.0 or (old == len(PLANS) - 1) or (old > 0 and rand() < 0.4):
            new = max(0, old - 1)
        else:
            new = old + 1
        if new == old:
            return n
        plans[idx] = new
        n += 1
        later(
            ts,
            "profiles",
            {
                "event_id": f"pr-{cust.customer_id}-{n}",
                "customer_id": cust.customer_id,
                "ts": ts,
                "attributes": self._attributes(cust, new),
            },
        )
        return n

    def _ticket(
        self,
        cust: _Customer,
        persona: Persona,
        n: int,
        lo: int,
        span: int,
        gloom: float,
        rand: Any,
        later: Any,
    ) -> int:
        """Emit one support ticket's lifecycle (opened … resolved [reopened …])."""
        cid = cust.customer_id
        n += 1
        ticket = f"t-{cid}-{n}"
        t = lo + int(rand() * span)
        r = rand() - 0.15 * (persona.urgent_bias + gloom)
        priority = "urgent" if r < 0.07 else "high" if r < 0.25 else "normal" if r < 0.75 else "low"
        channel = _TICKET_CHANNELS[int(rand() * len(_TICKET_CHANNELS))]
        hours = _MS_PER_HOUR

        def status(ts: int, value: str) -> None:
            nonlocal n
            n += 1
            later(
                ts,
                "support",
                {
                    "event_id": f"su-{cid}-{n}",
                    "customer_id": cid,
                    "ts": ts,
                    "ticket_id": ticket,
                    "status": value,
                    "priority": priority,
                    "channel": channel,
                },
            )

        status(t, "opened")
        for _ in range(_poisson(rand, persona.updates_mean * (1.0 + gloom))):
            t += int(-math.log(1.0 - rand()) * 6 * hours) + 60_000
            status(t, "updated")
        escalated = rand() < min(1.0, persona.escalation_p * (1.0 + gloom))
        if escalated:
            t += int(-math.log(1.0 - rand()) * 12 * hours) + 60_000
            status(t, "escalated")
        t += int(-math.log(1.0 - rand()) * _RESOLVE_HOURS[priority] * hours) + 60_000
        status(t, "resolved")
        reopened = rand() < min(1.0, persona.reopen_p * (1.0 + gloom))
        if reopened:
            t += int(-math.log(1.0 - rand()) * 48 * hours) + 60_000
            status(t, "reopened")
            t += int(-math.log(1.0 - rand()) * 24 * hours) + 60_000
            status(t, "resolved")
        if rand() < persona.csat_p:
            t += int(-math.log(1.0 - rand()) * 2 * hours) + 60_000
            score = persona.csat_mean - 1.5 * gloom - 0.7 * escalated - 1.0 * reopened
            n += 1
            later(
                t,
                "feedback",
                {
                    "event_id": f"fe-{cid}-{n}",
                    "customer_id": cid,
                    "ts": t,
                    "kind": "csat",
                    "score": _clamp(round(score + 0.7 * _std_normal(rand)), 1, 5),
                },
            )
        return n

    # ------------------------------------------------------------- raw payloads
    def raw_records(self) -> Iterator[tuple[str, bytes, bytes]]:
        """Yield ``(topic, key, value)`` with serialised payloads, some broken.

        The key is the customer id (UTF-8). A ``bad_fraction`` of the clean
        events is replaced by a broken payload; after a clean payload a recent
        one is re-sent verbatim with probability ``duplicate_fraction``.

        Examples
        --------
        >>> sim = Simulation(customers=10, days=3, bad_fraction=0.0)
        >>> topic, key, value = next(iter(sim.raw_records()))
        >>> orjson.loads(value)["customer_id"] == key.decode()
        True
        """
        rng = random.Random(f"segmenter-simulator-raw-{self.seed}")
        rand = rng.random
        bad = self.bad_fraction
        dup = self.duplicate_fraction
        recent: deque[tuple[str, bytes, bytes]] = deque(maxlen=256)
        dumps = orjson.dumps
        for topic, event in self.events():
            key = event["customer_id"].encode()
            if bad > 0.0 and rand() < bad:
                yield topic, key, _corrupt(topic, event, rand)
                continue
            record = (topic, key, dumps(event))
            yield record
            recent.append(record)
            if dup > 0.0 and rand() < dup:
                yield recent[int(rand() * len(recent))]

    def raw_events(self) -> Iterator[tuple[str, bytes]]:
        """Yield ``(topic, payload bytes)``: :meth:`raw_records` without the key.

        Examples
        --------
        >>> sim = Simulation(customers=50, days=5, bad_fraction=0.1, duplicate_fraction=0.05)
        >>> payloads = [p for _, p in sim.raw_events()]
        >>> len(payloads) > sum(1 for _ in sim.events())
        True
        """
        for topic, _key, value in self.raw_records():
            yield topic, value


# ---------------------------------------------------------- one customer's day
def _scheduler(batch: _Batch, future: _Future, start: int, day_end: int, limit_day: int) -> _Later:
    """Return the function that files an event of one customer's day by its time.

    Today's events join the batch; later ones wait in ``future`` for their
    day, unless the customer has churned by then.
    """
    add_ts, add_topic, add_event = batch[0].append, batch[1].append, batch[2].append

    def later(ts: int, topic: str, event: dict[str, Any]) -> None:
        if ts < day_end:
            add_ts(ts)
            add_topic(topic)
            add_event(event)
            return
        target = (ts - start) // MS_PER_DAY
        if target < limit_day:
            future.setdefault(target, []).append((ts, topic, event))

    return later


def _mood(spec: _CustomerSpec, day: int) -> tuple[float, float]:
    """Return the customer's activity factor and gloom (0, to 1 just before churn) on ``day``.

    Churners fade over the :data:`FADE_DAYS` before their churn day; new
    customers are 50 % more active in their first week (the honeymoon).
    """
    act = spec.activity
    gloom = 0.0
    limit_day = spec.limit_day
    if spec.churner and limit_day - day < FADE_DAYS:
        fade = (limit_day - day) / FADE_DAYS
        act *= 0.1 + 0.9 * fade**1.3
        gloom = 1.0 - fade
    if spec.signup_day >= 0 and day - spec.signup_day < 7:
        act *= 1.5
    return act, gloom


def _browse(spec: _CustomerSpec, today: _Today, act: float, season_browse: float, n: int) -> int:
    """Draw the day's browsing sessions; return the updated id counter.

    This is the bulk of all events, hence the local names and the batch
    appended to directly rather than through ``today.later``.
    """
    rand = today.rand
    sessions = _poisson(rand, spec.persona.sessions_rate * act * season_browse)
    if not sessions:
        return n  # (most customer-days: skip the set-up below)
    bits = today.bits
    later = today.later
    day_end = today.day_end
    stamps, topics, payloads = today.batch
    add_ts, add_topic, add_event = stamps.append, topics.append, payloads.append
    cid = spec.cid
    platforms = spec.platforms
    n_platforms = spec.n_platforms
    category_table = spec.category_table
    actions = spec.actions
    kinds = spec.kinds
    fixed_pages = spec.fixed_pages
    search_pages = _SEARCH_PAGES
    category_pages = _CATEGORY_PAGES
    gaps = _GAP_TABLE
    mean_extra = spec.persona.actions_per_session - 1.0
    browse_prefix = f"br-{cid}-"
    for _ in range(sessions):
        ts = today.session_start()
        n += 1
        session = f"s-{cid}-{n}"
        platform = platforms[int(rand() * n_platforms)]
        category = category_table[bits(5)]
        length = 1 + int(-math.log(1.0 - rand()) * mean_extra)
        for _ in range(length):
            # One 39-bit draw per action: bits 0-8 the action, 9-11 whether
            # the category changes (1 in 8), 12-16 the new category, 17-26
            # the gap to the next action, 27-38 the product number.
            b = bits(39)
            k = b & 511
            if not b & 0xE00:
                category = category_table[(b >> 12) & 31]
            kind = kinds[k]
            if kind == 0:
                page = f"/p/{category}/{b >> 27}"
            elif kind == 1:
                page = search_pages[category]
            elif kind == 2:
                page = category_pages[category]
            else:
                page = fixed_pages[k]
            n += 1
            event = {
                "event_id": f"{browse_prefix}{n}",
                "customer_id": cid,
                "ts": ts,
                "session_id": session,
                "action": actions[k],
                "page": page,
                "category": category,
                "platform": platform,
            }
            if ts < day_end:
                add_ts(ts)
                add_topic("browsing")
                add_event(event)
            else:
                later(ts, "browsing", event)
            ts += gaps[(b >> 17) & 1023]
    return n


def _checkout_session(
    spec: _CustomerSpec, today: _Today, ts: int, category: str, platform: str, n: int
) -> tuple[int, int]:
    """Emit the short session leading to a purchase at ``ts``.

    Returns the id counter and the purchase time, moved after the session's
    last step if the session ran past ``ts``.
    """
    rand = today.rand
    cid = spec.cid
    n += 1
    session = f"s-{cid}-{n}"
    steps: tuple[str, ...] = ("product_view", "add_to_cart", "checkout_start")
    if rand() < 0.5:
        steps = ("search", *steps)
    t = max(today.lo, ts - (len(steps) + 1) * 90_000)
    for action in steps:
        n += 1
        today.later(
            t,
            "browsing",
            {
                "event_id": f"br-{cid}-{n}",
                "customer_id": cid,
                "ts": t,
                "session_id": session,
                "action": action,
                "page": _checkout_page(action, category, rand),
                "category": category,
                "platform": platform,
            },
        )
        t += 1000 + int(rand() * 60_000)
    return n, max(ts, t)


def _checkout_page(action: str, category: str, rand: Callable[[], float]) -> str:
    """The page of a checkout session's step (a product page draws its number)."""
    if action == "product_view":
        return f"/p/{category}/{int(rand() * 5000)}"
    return "/checkout" if action == "checkout_start" else "/cart"


def _review(spec: _CustomerSpec, today: _Today, ts: int, gloom: float, n: int) -> int:
    """Emit the review of a purchase at ``ts``, two to seven days later; return the counter."""
    persona = spec.persona
    rand = today.rand
    cid = spec.cid
    score = _clamp(round(persona.review_mean - 1.5 * gloom + 0.9 * _std_normal(rand)), 1, 5)
    rts = ts + 2 * MS_PER_DAY + int(rand() * 5 * MS_PER_DAY)
    n += 1
    review: dict[str, Any] = {
        "event_id": f"fe-{cid}-{n}",
        "customer_id": cid,
        "ts": rts,
        "kind": "review",
        "score": score,
    }
    if rand() < 0.6:
        comments = _REVIEW_COMMENTS[score]
        review["comment"] = comments[int(rand() * len(comments))]
    today.later(rts, "feedback", review)
    return n


def _nps(spec: _CustomerSpec, today: _Today, ts: int, gloom: float, n: int) -> int:
    """Emit an NPS answer at ``ts`` (lower while fading); return the counter."""
    persona = spec.persona
    cid = spec.cid
    n += 1
    today.later(
        ts,
        "feedback",
        {
            "event_id": f"fe-{cid}-{n}",
            "customer_id": cid,
            "ts": ts,
            "kind": "nps",
            "score": _clamp(
                round(persona.nps_mean - 4.0 * gloom + persona.nps_sd * _std_normal(today.rand)),
                0,
                10,
            ),
        },
    )
    return n


#: Ways a payload is broken for dead-letter demos.
BAD_KINDS = ("invalid_json", "missing_field", "negative_amount", "bad_ts", "non_utf8")
_REQUIRED = {
    "profiles": ("event_id", "customer_id", "ts", "attributes"),
    "purchases": ("event_id", "customer_id", "ts", "order_id", "amount"),
    "browsing": ("event_id", "customer_id", "ts", "session_id", "action"),
    "support": ("event_id", "customer_id", "ts", "ticket_id", "status"),
    "feedback": ("event_id", "customer_id", "ts", "kind", "score"),
}


def _corrupt(topic: str, event: dict[str, Any], rand: Any) -> bytes:
    """Return a broken serialisation of ``event`` (never valid per the contract)."""
    kind = BAD_KINDS[int(rand() * len(BAD_KINDS))]
    if kind == "negative_amount" and topic != "purchases":
        kind = "missing_field"
    broken = dict(event)
    if kind == "invalid_json":
        text = orjson.dumps(broken)
        return text[: max(1, int(len(text) * (0.3 + 0.5 * rand())))] + b"\x7b,,"
    if kind == "missing_field":
        required = _REQUIRED[topic]
        del broken[required[int(rand() * len(required))]]
        return orjson.dumps(broken)
    if kind == "negative_amount":
        broken["amount"] = -round(abs(float(broken["amount"])) + 1.0, 2)
        return orjson.dumps(broken)
    if kind == "bad_ts":
        broken["ts"] = ("yesterday", "2026-13-45T99:00:00Z", "2026-01-01T10:00:00", None)[
            int(rand() * 4)
        ]
        return orjson.dumps(broken)
    text = orjson.dumps(broken)
    return text.replace(b'"customer_id":"', b'"customer_id":"\xff\xfe', 1)


def _cumulative(weights: list[float]) -> Iterator[float]:
    acc = 0.0
    for weight in weights:
        acc += weight
        yield acc


def _clamp(value: int, low: int, high: int) -> int:
    return low if value < low else high if value > high else value
