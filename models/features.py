"""Per-customer feature state: one plain JSON dict, updated per event, read as of a clock.

The state is serialised (orjson) on every accepted event, so it is compact and
built only from str-keyed dicts, lists, ints, floats, strings and ``None``; an
orjson round trip gives an equal, fully working state.

API
---
``new_state() -> dict``
    A fresh state. The :mod:`models.dedup` memory is *not* part of it: it lives
    next to it in the same customer table value, under ``"dedup"``
    (``{"f": <this state>, "dedup": <models.dedup memory>, ...}``, see
    ``models.processing``). Dedup runs first; only ``"new"`` events reach
    :func:`apply_event`, which therefore does no de-duplication itself.
``apply_event(state, topic, event) -> None``
    Fold one validated, de-duplicated event (``ts`` already int epoch ms) into
    the state. Order-independent: any permutation of the same events gives the
    same :func:`read_features` (floating point sums within 1e-9), under the two
    documented memory bounds below.
``read_features(state, clock_ms) -> dict``
    The flat feature dict served by ``GET /customers/{id}``, as of the stream
    clock. Names are in :data:`FEATURE_NAMES`; ``docs/features.md`` defines each.
``prune(state, clock_ms) -> None``
    Optional: fold day buckets and old resolved tickets that can no longer
    influence any read at a clock ``>= clock_ms``. ``apply_event`` already
    prunes against the customer's newest event, so state stays bounded without
    it.

Conventions
-----------
Days are UTC calendar days of event time (:func:`models.eventtime.day_of`). A
horizon of ``h`` days read at clock day ``c`` covers days ``d`` with
``c - h < d <= c``. Purchases follow the buy-till-you-die (BTYD) conventions of
``lifetimes.summary_data_from_transaction_data``: ``frequency`` = distinct purchase
days - 1, ``recency`` = last - first purchase day, ``T`` = clock day - first
purchase day, ``monetary_value`` = mean daily total over the repeat purchase days
(0 when ``frequency`` is 0). A customer without purchases has ``frequency`` 0,
``recency`` 0, ``monetary_value`` 0.0 and ``T`` ``None`` (no first purchase to
count from). Reads use ``max(clock_ms, newest event ts of the customer)`` as the
clock so durations are never negative when the shared stream clock lags.

State layout (``v`` = 2)
------------------------
======== ==================================================================
key      content
======== ==================================================================
``v``    layout version
``hi``   newest event ts of any topic (None before the first event)
``fd``   fold day: days ``<= fd`` are folded out of the day buckets
``d``    day buckets ``{str(day): [events, orders, revenue, product_views,
         cart_adds, session_starts, escalations]}`` for days ``> fd``
``p``    ``[orders, revenue, items, first_ts, last_ts, first_day_revenue,
         repeat_revenue]``
``pd``   purchase days folded out of ``d``: ``[base_day, hex bitmap, count]``
         (bit ``i`` = day ``base_day + i``) or None; keeps ``frequency`` exact
         however late a purchase arrives
``cat``  ``{category: orders}``
``b``    ``[events, product_views, searches, cart_adds, cart_removes,
         checkout_starts, wishlist_adds, sessions, last_ts]``
``plat`` ``{platform: browsing events}``
``sid``  ``[base, width, keys, starts]``: the :data:`SESSION_MEMORY` most
         recently started sessions, packed as in :mod:`models.dedup`: session
         ``i`` is key ``keys[8 * i: 8 * i + 8]`` (``dedup.id_key`` of its id)
         with first ts ``base + dedup.time_at(starts, width, i)``, in the order
         they were first seen (~13.3 bytes a session while the starts span < 49
         days, else ~16). Layout 1 (``v`` = 1) held ``{session_id: first ts}``;
         it is converted, order kept, by the first browsing event with a
         session
``t``    live tickets ``{ticket_id: [first_ts, last_ts, last_event_id,
         last_status, urgent 0/1]}``
``s``    ``[folded tickets, folded resolution ms, folded urgent tickets,
         escalations, reopened]``
``f``    ``[nps_n, nps_sum, nps_last_ts, nps_last_event_id, nps_last_score,
         csat_n, csat_sum, review_n, review_sum, last_feedback_ts]``
``pr``   ``{attribute: [ts, event_id, value]}``
``la``   newest behavioural (purchase, browsing, support, feedback) event ts
======== ==================================================================

Bounds
------
Buckets: apply_event folds once the newest event is more than 97 days past the
fold day, so at most ~97 buckets are kept (2 years of daily activity: 97). Days
``<= fd`` lie outside every horizon at any clock ``>=`` the newest event, so
dropping their windowed counts changes no answer; their purchase days go to the
``pd`` bitmap (~1 hex digit per 4 days of purchase history).

Sessions: only the :data:`SESSION_MEMORY` (64) sessions with the latest start are
remembered; an event of a session evicted earlier counts as a new session.
Sessions are assumed not to interleave beyond that (true for real browsing).

Tickets: a ticket that is resolved and whose newest event is at least 90 days
older than the fold reference is folded into the ``s`` counters (it is out of
every horizon and not open). A later event for it starts a new ticket. With the
default dedup window (7 days < 90) this only happens when a ticket gets new
activity after 90 days of silence.

Costs
-----
Measured with ``tests/models/test_features.py::test_costs`` and timeit (best of
repeats) on a busy 2-core CI box where ``sum(range(1000))`` took 14 µs (about
8 µs on an idle modern core), for a heavy "typical" customer: 90 days, two
thirds of them active with 5 browsing events, 9 purchases, 5 tickets, 64
remembered sessions, 69 day buckets:

* ``apply_event``: 1.1-1.5 µs per event (no pruning); a fold runs at most once
  per 7 days of event time and costs ~1 µs per bucket.
* ``read_features``: ~36 µs here, ~20 µs normalised to an idle core; about half
  is the loop over the day buckets.
* state size: 3.7 kB as orjson (4.6 kB with layout 1); the 64 packed session
  ids are ~1.0 kB of it (~2.0 kB as a dict). A browsing event pays ~1 µs (idle
  core) for hashing and finding its session id, less than the orjson
  ``loads``/``dumps`` time the packing saves. A customer with 2 years of daily
  activity stays under 12 kB.

Examples
--------
>>> from models.eventtime import MS_PER_DAY
>>> state = new_state()
>>> for day, amount in [(0, 10.0), (0, 5.0), (3, 20.0), (10, 30.0)]:
...     apply_event(state, "purchases", {"event_id": f"p{day}{amount}", "customer_id": "c",
...                 "ts": day * MS_PER_DAY, "order_id": "o", "amount": amount, "items": 1,
...                 "category": "books", "channel": "web"})
>>> f = read_features(state, 20 * MS_PER_DAY)
>>> f["frequency"], f["recency"], f["T"], f["monetary_value"], f["orders"]
(2, 10, 20, 25.0, 4)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from models.dedup import (
    append_time,
    decode_times,
    encode_times,
    id_key,
    pack_offsets,
    set_time,
    time_at,
)
from models.eventtime import MS_PER_DAY, format_ts
from models.topics import FEATURE_TOPICS

__all__ = [
    "FEATURE_NAMES",
    "HORIZON_DAYS",
    "SESSION_MEMORY",
    "TOPICS",
    "apply_event",
    "new_state",
    "prune",
    "read_features",
    "repeat_revenue",
]

HORIZON_DAYS = 90
"""Longest look-back of any windowed feature, in days."""
SESSION_MEMORY = 64
"""How many session ids (latest starts) are remembered per customer."""
LAYOUT = 2
"""State layout version (``"v"``); layout-1 states are converted on first use."""
TOPICS = FEATURE_TOPICS
"""Topics :func:`apply_event` accepts."""

_PRUNE_SLACK_DAYS = 7
_State = dict[str, Any]

# Day bucket slots.
_EV, _ORD, _REV, _PV, _CA, _SS, _ESC = range(7)

_ACTIONS = {
    "product_view": 1,
    "search": 2,
    "add_to_cart": 3,
    "remove_from_cart": 4,
    "checkout_start": 5,
    "wishlist_add": 6,
}
_FEEDBACK_KINDS = ("nps", "csat", "review")

FEATURE_NAMES: tuple[str, ...] = (
    # purchases
    "frequency",
    "recency",
    "T",
    "monetary_value",
    "orders",
    "revenue",
    "items",
    "first_purchase_ts",
    "last_purchase_ts",
    "avg_order_value",
    "days_since_last_purchase",
    "orders_7d",
    "orders_30d",
    "orders_90d",
    "revenue_7d",
    "revenue_30d",
    "revenue_90d",
    "distinct_categories",
    "top_category",
    "category_share",
    # browsing
    "browsing_events",
    "sessions",
    "sessions_30d",
    "product_views",
    "product_views_30d",
    "searches",
    "cart_adds",
    "cart_adds_30d",
    "cart_removes",
    "checkout_starts",
    "wishlist_adds",
    "cart_abandonment_rate",
    "view_to_purchase_rate",
    "top_platform",
    "last_browse_ts",
    # support
    "tickets",
    "open_tickets",
    "tickets_30d",
    "tickets_90d",
    "escalations",
    "escalations_90d",
    "reopened",
    "avg_resolution_days",
    "urgent_tickets",
    # feedback
    "nps_last",
    "nps_category",
    "nps_count",
    "nps_avg",
    "nps_trend",
    "csat_avg",
    "csat_count",
    "review_avg",
    "review_count",
    "last_feedback_ts",
    # activity
    "last_event_ts",
    "days_since_last_event",
    "events_7d",
    "events_30d",
    "events_90d",
    "active_days_30d",
    # profiles
    "profile",
)
"""Every key :func:`read_features` returns, in order."""


def new_state() -> dict[str, Any]:
    """Return the state of a customer that has seen no event.

    Examples
    --------
    >>> s = new_state()
    >>> s["hi"] is None, s["d"]
    (True, {})
    >>> read_features(s, 0)["frequency"], read_features(s, 0)["T"]
    (0, None)
    """
    return {
        "v": LAYOUT,
        "hi": None,
        "fd": None,
        "d": {},
        "p": [0, 0.0, 0, None, None, 0.0, 0.0],
        "pd": None,
        "cat": {},
        "b": [0, 0, 0, 0, 0, 0, 0, 0, None],
        "plat": {},
        "sid": [0, 4, "", ""],
        "t": {},
        "s": [0, 0, 0, 0, 0],
        "f": [0, 0, None, None, None, 0, 0, 0, 0, None],
        "pr": {},
        "la": None,
    }


# --------------------------------------------------------------------------- apply


def _bucket(state: dict[str, Any], day: int) -> list[Any]:
    buckets = state["d"]
    key = str(day)
    bucket = buckets.get(key)
    if bucket is None:
        bucket = buckets[key] = [0, 0, 0.0, 0, 0, 0, 0]
    return bucket


def _mark_purchase_day(state: dict[str, Any], day: int) -> None:
    """Record a purchase day that lies in the folded region (``day <= fd``)."""
    folded = state["pd"]
    if folded is None:
        state["pd"] = [day, "1", 1]
        return
    base, bitmap, count = folded
    bits = int(bitmap, 16)
    if day < base:
        bits <<= base - day
        base = day
    bit = 1 << (day - base)
    if bits & bit:
        return
    state["pd"] = [base, format(bits | bit, "x"), count + 1]


def _apply_purchase(
    state: dict[str, Any], event: dict[str, Any], ts: int, day: int, fd: int
) -> None:
    amount = event["amount"]
    items = event.get("items", 0)  # optional: the feature sums the orders that give it
    category = event.get("category")
    p = state["p"]
    p[0] += 1
    p[1] += amount
    p[2] += items
    first = p[3]
    if first is None:
        p[3] = p[4] = ts
        p[5] += amount
    else:
        first_day = first // MS_PER_DAY
        if day < first_day:
            p[6] += p[5]
            p[5] = 0.0 + amount
            p[3] = ts
        elif day == first_day:
            p[5] += amount
            if ts < first:
                p[3] = ts
        else:
            p[6] += amount
        if ts > p[4]:
            p[4] = ts
    if category is not None:
        cats = state["cat"]
        cats[category] = cats.get(category, 0) + 1
    if day > fd:
        bucket = _bucket(state, day)
        bucket[_EV] += 1
        bucket[_ORD] += 1
        bucket[_REV] += amount
    else:
        _mark_purchase_day(state, day)


def _apply_browsing(
    state: dict[str, Any], event: dict[str, Any], ts: int, day: int, fd: int
) -> None:
    action = event["action"]
    session = event.get("session_id")
    platform = event.get("platform")
    b = state["b"]
    b[0] += 1
    slot = _ACTIONS.get(action)
    if slot is not None:
        b[slot] += 1
    if b[8] is None or ts > b[8]:
        b[8] = ts
    bucket = _bucket(state, day) if day > fd else None
    if bucket is not None:
        bucket[_EV] += 1
        if slot == 1:
            bucket[_PV] += 1
        elif slot == 3:
            bucket[_CA] += 1
    if platform is not None:
        plat = state["plat"]
        plat[platform] = plat.get(platform, 0) + 1
    if session is None:
        return
    sid = state["sid"]
    if type(sid) is dict:  # layout 1: {session_id: first ts}
        sid = state["sid"] = _sessions_from_v1(sid)
        state["v"] = LAYOUT
    key = id_key(session)
    keys = sid[2]
    at = keys.find(key)
    while at & 7 and at > 0:  # a match straddling two keys is not a key
        at = keys.find(key, at + 1)
    if at < 0:
        b[7] += 1
        _remember_session(sid, key, ts)
        if bucket is not None:
            bucket[_SS] += 1
        return
    base = sid[0]
    width = sid[1]
    index = at >> 3
    start = base + time_at(sid[3], width, index)
    if ts < start:
        if ts >= base:
            sid[3] = set_time(sid[3], width, index, ts - base)
        else:
            values = [base + offset for offset in decode_times(sid[3], width)]
            values[index] = ts
            sid[0], sid[1], sid[3] = encode_times(values)
        old_day = start // MS_PER_DAY
        if old_day != day:
            if old_day > fd:
                state["d"][str(old_day)][_SS] -= 1
            if bucket is not None:
                bucket[_SS] += 1


def _sessions_from_v1(sids: dict[str, int]) -> list[Any]:
    """Convert the layout-1 ``{session_id: first ts}`` memory, keeping its order."""
    base, width, text = encode_times(list(sids.values()))
    return [base, width, "".join(map(id_key, sids)), text]


def _remember_session(sid: list[Any], key: str, ts: int) -> None:
    """Append a new session; forget the earliest-started one beyond SESSION_MEMORY.

    Ties on the start go to the first remembered, as ``min`` over the layout-1 dict
    (whose order this memory keeps) did.
    """
    base, width, keys, text = sid
    offset = ts - base
    fits = offset >= 0 and not offset >> (width << 3)
    if fits and len(keys) < SESSION_MEMORY << 3:
        sid[3] = append_time(text, (len(keys) >> 3) * width, offset.to_bytes(width, "little"))
        sid[2] = keys + key
        return
    offsets = decode_times(text, width)
    if not fits:  # before the base or beyond the width: re-base
        values = [base + offset for offset in offsets]
        values.append(ts)
        base, width, text = encode_times(values)
        offsets = decode_times(text, width)
    else:
        offsets.append(offset)
    keys += key
    if len(offsets) > SESSION_MEMORY:
        first = offsets.index(min(offsets))
        del offsets[first]
        keys = keys[: first << 3] + keys[(first + 1) << 3 :]
    sid[:] = [base, width, keys, pack_offsets(offsets, width)]


def _apply_support(
    state: dict[str, Any], event: dict[str, Any], ts: int, day: int, fd: int
) -> None:
    ticket_id = event["ticket_id"]
    status = event["status"]
    event_id = event["event_id"]
    urgent = 1 if event.get("priority") == "urgent" else 0
    s = state["s"]
    bucket = _bucket(state, day) if day > fd else None
    if bucket is not None:
        bucket[_EV] += 1
    if status == "escalated":
        s[3] += 1
        if bucket is not None:
            bucket[_ESC] += 1
    elif status == "reopened":
        s[4] += 1
    tickets = state["t"]
    ticket = tickets.get(ticket_id)
    if ticket is None:
        tickets[ticket_id] = [ts, ts, event_id, status, urgent]
        return
    if ts < ticket[0]:
        ticket[0] = ts
    if ts > ticket[1] or (ts == ticket[1] and event_id > ticket[2]):
        ticket[1] = ts
        ticket[2] = event_id
        ticket[3] = status
    if urgent:
        ticket[4] = 1


def _apply_feedback(
    state: dict[str, Any], event: dict[str, Any], ts: int, day: int, fd: int
) -> None:
    kind = event["kind"]
    score = event["score"]
    if kind not in _FEEDBACK_KINDS:
        raise ValueError(f"unknown feedback kind {kind!r}")
    f = state["f"]
    if kind == "nps":
        event_id = event["event_id"]
        f[0] += 1
        f[1] += score
        if f[2] is None or ts > f[2] or (ts == f[2] and event_id > f[3]):
            f[2] = ts
            f[3] = event_id
            f[4] = score
    elif kind == "csat":
        f[5] += 1
        f[6] += score
    else:
        f[7] += 1
        f[8] += score
    if f[9] is None or ts > f[9]:
        f[9] = ts
    if day > fd:
        _bucket(state, day)[_EV] += 1


def _apply_profile(
    state: dict[str, Any], event: dict[str, Any], ts: int, day: int, fd: int
) -> None:
    attributes = event["attributes"]
    event_id = event["event_id"]
    if not isinstance(attributes, dict):
        raise ValueError("profile attributes must be an object")
    profile = state["pr"]
    for name, value in attributes.items():
        held = profile.get(name)
        if held is None or ts > held[0] or (ts == held[0] and event_id > held[1]):
            profile[name] = [ts, event_id, value]


_HANDLERS = {
    "purchases": _apply_purchase,
    "browsing": _apply_browsing,
    "support": _apply_support,
    "feedback": _apply_feedback,
    "profiles": _apply_profile,
}


def apply_event(state: dict[str, Any], topic: str, event: dict[str, Any]) -> None:
    """Fold one validated, de-duplicated event into ``state`` (in place).

    Parameters
    ----------
    state
        A customer state from :func:`new_state` (possibly after an orjson round
        trip).
    topic
        ``purchases``, ``browsing``, ``support``, ``feedback`` or ``profiles``
        (without the topic prefix).
    event
        The event dict, fields as in ``CONTRACT.md``, ``ts`` an int (epoch ms UTC).

    Raises
    ------
    ValueError
        Unknown topic, non-int ``ts``, unknown feedback ``kind`` or non-object
        profile ``attributes``; KeyError for a missing required field. Either is
        raised before the state is modified.

    Examples
    --------
    >>> s = new_state()
    >>> apply_event(s, "browsing", {"event_id": "b1", "customer_id": "c", "ts": 0,
    ...             "session_id": "s1", "action": "product_view"})
    >>> read_features(s, 0)["product_views"]
    1
    >>> apply_event(s, "returns", {"ts": 0})
    Traceback (most recent call last):
    ...
    ValueError: unknown topic 'returns'
    """
    handler = _HANDLERS.get(topic)
    if handler is None:
        raise ValueError(f"unknown topic {topic!r}")
    ts = event["ts"]
    if type(ts) is not int:
        raise ValueError("event ts must be int epoch milliseconds")
    day = ts // MS_PER_DAY
    fd = state["fd"]
    if fd is None:
        fd = day - HORIZON_DAYS
    handler(state, event, ts, day, fd)
    state["fd"] = fd
    if topic != "profiles":
        last = state["la"]
        if last is None or ts > last:
            state["la"] = ts
    hi = state["hi"]
    if hi is None or ts > hi:
        state["hi"] = ts
        if day - HORIZON_DAYS - _PRUNE_SLACK_DAYS > fd:
            _fold(state, day - HORIZON_DAYS)


# --------------------------------------------------------------------------- prune


def _fold(state: dict[str, Any], fold_day: int) -> None:
    """Fold everything that lies on or before ``fold_day`` out of the buckets."""
    buckets = state["d"]
    for key in [key for key in buckets if int(key) <= fold_day]:
        bucket = buckets.pop(key)
        if bucket[_ORD]:
            _mark_purchase_day(state, int(key))
    tickets = state["t"]
    s = state["s"]
    for ticket_id in [
        tid
        for tid, ticket in tickets.items()
        if ticket[3] == "resolved" and ticket[1] // MS_PER_DAY <= fold_day
    ]:
        first_ts, last_ts, _eid, _status, urgent = tickets.pop(ticket_id)
        s[0] += 1
        s[1] += last_ts - first_ts
        s[2] += urgent
    state["fd"] = fold_day


def prune(state: dict[str, Any], clock_ms: int) -> None:
    """Fold state that no read at a clock ``>= clock_ms`` can need.

    Day buckets on or before ``day_of(clock_ms) - 90`` are dropped (their purchase
    days kept in the bitmap) and resolved tickets silent since then are folded
    into counters. ``apply_event`` already does this against the customer's
    newest event; call this for customers that have gone quiet.

    Examples
    --------
    >>> from models.eventtime import MS_PER_DAY
    >>> s = new_state()
    >>> apply_event(s, "purchases", {"event_id": "p", "customer_id": "c", "ts": 0,
    ...             "order_id": "o", "amount": 5, "items": 1, "category": "x", "channel": "web"})
    >>> before = read_features(s, 400 * MS_PER_DAY)
    >>> prune(s, 400 * MS_PER_DAY)
    >>> s["d"], read_features(s, 400 * MS_PER_DAY) == before
    ({}, True)
    """
    hi = state["hi"]
    if hi is None:
        return
    fold_day = max(clock_ms, hi) // MS_PER_DAY - HORIZON_DAYS
    if fold_day > state["fd"]:
        _fold(state, fold_day)


# --------------------------------------------------------------------------- read


@lru_cache(maxsize=4096)
def _date_prefix(day: int) -> str:
    return format_ts(day * MS_PER_DAY)[:11]


def _fmt(ts: int | None) -> str | None:
    """:func:`models.eventtime.format_ts`, 10x faster (the date part is cached per day)."""
    if ts is None:
        return None
    day, ms = divmod(ts, MS_PER_DAY)
    seconds, ms = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{_date_prefix(day)}{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}Z"


def _top(counts: dict[str, int]) -> str | None:
    """Key with the largest count; ties go to the lexicographically smallest."""
    best: str | None = None
    best_n = 0
    for key, n in counts.items():
        if n > best_n or (n == best_n and best is not None and key < best):
            best, best_n = key, n
    return best


def repeat_revenue(state: dict[str, Any]) -> float:
    """Purchase total of every purchase day but the first (``monetary_value * frequency``).

    What the sweep needs for the spend table without reading every feature.

    >>> s = new_state()
    >>> for ts, amount in [(0, 10.0), (86_400_000, 30.0), (2 * 86_400_000, 50.0)]:
    ...     apply_event(s, "purchases", {"ts": ts, "amount": amount, "event_id": str(ts)})
    >>> repeat_revenue(s), read_features(s, 3 * 86_400_000)["monetary_value"]
    (80.0, 40.0)
    """
    return float(state["p"][6])


def read_features(state: dict[str, Any], clock_ms: int) -> dict[str, Any]:
    """Return the flat feature dict as of the stream clock ``clock_ms``.

    Parameters
    ----------
    state
        A customer state.
    clock_ms
        The stream clock (epoch ms). If it lags the customer's newest event, the
        newest event's time is used instead.

    Returns
    -------
    dict
        Keys :data:`FEATURE_NAMES`; ``None`` where a value is undefined (see
        ``docs/features.md``). The state is not modified.

    Examples
    --------
    >>> from models.eventtime import MS_PER_DAY
    >>> s = new_state()
    >>> apply_event(s, "feedback", {"event_id": "f1", "customer_id": "c", "ts": 0,
    ...             "kind": "nps", "score": 6})
    >>> apply_event(s, "feedback", {"event_id": "f2", "customer_id": "c", "ts": MS_PER_DAY,
    ...             "kind": "nps", "score": 10})
    >>> f = read_features(s, 3 * MS_PER_DAY)
    >>> f["nps_last"], f["nps_category"], f["nps_avg"], f["nps_trend"], f["events_7d"]
    (10, 'promoter', 8.0, 4.0, 2)
    """
    hi = state["hi"]
    clock = clock_ms if hi is None or clock_ms >= hi else hi
    cday = clock // MS_PER_DAY
    c7 = cday - 7
    c30 = cday - 30
    c90 = cday - HORIZON_DAYS

    purchase_days = 0
    ev7 = ev30 = ev90 = active30 = 0
    or7 = or30 = or90 = 0
    re7 = re30 = re90 = 0.0
    pv30 = ca30 = ss30 = esc90 = 0
    cart_days = converted_days = 0
    for key, (ev, od, rv, pv, ca, ss, es) in state["d"].items():
        day = int(key)
        if od:
            purchase_days += 1
        if day <= c90:
            continue
        ev90 += ev
        if od:
            or90 += od
            re90 += rv
        if es:
            esc90 += es
        if ca:
            cart_days += 1
            if od:
                converted_days += 1
        if day > c30:
            if ev:
                active30 += 1
                ev30 += ev
            if od:
                or30 += od
                re30 += rv
            pv30 += pv
            ca30 += ca
            ss30 += ss
            if day > c7:
                ev7 += ev
                if od:
                    or7 += od
                    re7 += rv
    folded_days = state["pd"]
    if folded_days is not None:
        purchase_days += folded_days[2]

    orders, revenue, items, first_ts, last_ts, _first_rev, repeat_rev = state["p"]
    if orders:
        frequency = purchase_days - 1
        first_day = first_ts // MS_PER_DAY
        last_day = last_ts // MS_PER_DAY
        recency: int = last_day - first_day
        big_t: int | None = cday - first_day
        since_purchase: int | None = cday - last_day
        monetary = repeat_rev / frequency if frequency else 0.0
        avg_order: float | None = revenue / orders
    else:
        frequency = recency = 0
        big_t = since_purchase = avg_order = None
        monetary = 0.0

    cats = state["cat"]
    cat_total = sum(cats.values())
    b = state["b"]

    tickets = state["t"]
    s = state["s"]
    open_tickets = t30 = t90 = 0
    res_ms = s[1]
    res_n = s[0]
    urgent = s[2]
    for first, last, _eid, status, is_urgent in tickets.values():
        if status == "resolved":
            res_ms += last - first
            res_n += 1
        else:
            open_tickets += 1
        fday = first // MS_PER_DAY
        if fday > c90:
            t90 += 1
            if fday > c30:
                t30 += 1
        urgent += is_urgent

    f = state["f"]
    nps_n, nps_sum, _nts, _nid, nps_last = f[0], f[1], f[2], f[3], f[4]
    if nps_last is None:
        nps_category = None
    elif nps_last >= 9:
        nps_category = "promoter"
    elif nps_last >= 7:
        nps_category = "passive"
    else:
        nps_category = "detractor"

    last_event = state["la"]
    product_views = b[1]
    return {
        "frequency": frequency,
        "recency": recency,
        "T": big_t,
        "monetary_value": monetary,
        "orders": orders,
        "revenue": revenue,
        "items": items,
        "first_purchase_ts": _fmt(first_ts),
        "last_purchase_ts": _fmt(last_ts),
        "avg_order_value": avg_order,
        "days_since_last_purchase": since_purchase,
        "orders_7d": or7,
        "orders_30d": or30,
        "orders_90d": or90,
        "revenue_7d": re7,
        "revenue_30d": re30,
        "revenue_90d": re90,
        "distinct_categories": len(cats),
        "top_category": _top(cats),
        "category_share": {cat: n / cat_total for cat, n in cats.items()},
        "browsing_events": b[0],
        "sessions": b[7],
        "sessions_30d": ss30,
        "product_views": product_views,
        "product_views_30d": pv30,
        "searches": b[2],
        "cart_adds": b[3],
        "cart_adds_30d": ca30,
        "cart_removes": b[4],
        "checkout_starts": b[5],
        "wishlist_adds": b[6],
        "cart_abandonment_rate": 1.0 - converted_days / cart_days if cart_days else None,
        "view_to_purchase_rate": orders / product_views if product_views else None,
        "top_platform": _top(state["plat"]),
        "last_browse_ts": _fmt(b[8]),
        "tickets": s[0] + len(tickets),
        "open_tickets": open_tickets,
        "tickets_30d": t30,
        "tickets_90d": t90,
        "escalations": s[3],
        "escalations_90d": esc90,
        "reopened": s[4],
        "avg_resolution_days": res_ms / res_n / MS_PER_DAY if res_n else None,
        "urgent_tickets": urgent,
        "nps_last": nps_last,
        "nps_category": nps_category,
        "nps_count": nps_n,
        "nps_avg": nps_sum / nps_n if nps_n else None,
        "nps_trend": nps_last - (nps_sum - nps_last) / (nps_n - 1) if nps_n >= 2 else None,
        "csat_avg": f[6] / f[5] if f[5] else None,
        "csat_count": f[5],
        "review_avg": f[8] / f[7] if f[7] else None,
        "review_count": f[7],
        "last_feedback_ts": _fmt(f[9]),
        "last_event_ts": _fmt(last_event),
        "days_since_last_event": None if last_event is None else cday - last_event // MS_PER_DAY,
        "events_7d": ev7,
        "events_30d": ev30,
        "events_90d": ev90,
        "active_days_30d": active30,
        "profile": {name: held[2] for name, held in state["pr"].items()},
    }
