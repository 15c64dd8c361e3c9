"""Independent pandas reference for :mod:`models.features`.

Computes every feature from the complete, flat event list the obvious way
(pandas group-bys over all events, no incremental state, no pruning, no memory
bounds), so it can check the streaming implementation. It deliberately does not
import :mod:`models.features`; only the time helpers of :mod:`models.eventtime`
are shared.

Where the streaming state has documented memory bounds (64 remembered sessions
per customer; resolved tickets silent for 90 days are folded), the reference is
exact and the two agree only while those bounds are not hit.

Integration tests replay events through Kafka and call::

    expected = reference_features(events, clock_ms)[customer_id]
    assert compare_features(actual, expected) == []
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import pandas as pd

from models.eventtime import MS_PER_DAY, format_ts, parse_ts

__all__ = ["compare_features", "reference_features"]

BEHAVIOUR = ("purchases", "browsing", "support", "feedback")


def _frame(rows: list[dict[str, Any]], columns: Iterable[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["ts", "event_id", *columns])
    frame["ts"] = frame["ts"].astype("int64")
    frame["day"] = frame["ts"] // MS_PER_DAY
    return frame


def _top(series: pd.Series) -> str | None:
    """Most frequent value; ties go to the lexicographically smallest."""
    series = series.dropna()
    if series.empty:
        return None
    counts = series.value_counts()
    best = counts.max()
    return str(min(counts[counts == best].index))


def _opt(ts: Any) -> str | None:
    return None if ts is None or pd.isna(ts) else format_ts(int(ts))


def reference_features(events: list[tuple[str, dict[str, Any]]], clock_ms: int) -> dict[str, dict]:
    """Features of every customer in ``events`` as of ``clock_ms``.

    Parameters
    ----------
    events
        ``(topic, event)`` pairs, already de-duplicated; ``ts`` an int (epoch ms)
        or an RFC 3339 string. Topics other than the five feature topics are
        ignored.
    clock_ms
        The stream clock; per customer, ``max(clock_ms, newest event ts)`` is used.

    Returns
    -------
    dict
        ``{customer_id: {feature: value}}``.
    """
    by_customer: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for topic, event in events:
        if topic not in (*BEHAVIOUR, "profiles"):
            continue
        row = dict(event)
        row["ts"] = parse_ts(event["ts"])
        by_customer.setdefault(str(event["customer_id"]), {}).setdefault(topic, []).append(row)
    return {cid: _customer(topics, clock_ms) for cid, topics in by_customer.items()}


def _customer(topics: dict[str, list[dict[str, Any]]], clock_ms: int) -> dict[str, Any]:
    purchases = _frame(topics.get("purchases", []), ["amount", "items", "category"])
    browsing = _frame(topics.get("browsing", []), ["session_id", "action", "platform"])
    support = _frame(topics.get("support", []), ["ticket_id", "status", "priority"])
    feedback = _frame(topics.get("feedback", []), ["kind", "score"])
    profiles = _frame(topics.get("profiles", []), ["attributes"])

    newest = max(
        (
            int(frame["ts"].max())
            for frame in (purchases, browsing, support, feedback, profiles)
            if not frame.empty
        ),
        default=clock_ms,
    )
    clock = max(clock_ms, newest)
    cday = clock // MS_PER_DAY

    def within(frame: pd.DataFrame, days: int, column: str = "day") -> pd.DataFrame:
        return frame[(frame[column] > cday - days) & (frame[column] <= cday)]

    out: dict[str, Any] = {}

    # ---- purchases (BTYD)
    orders = len(purchases)
    daily = purchases.groupby("day")["amount"].sum().sort_index()
    if orders:
        first_day, last_day = int(daily.index[0]), int(daily.index[-1])
        frequency = len(daily) - 1
        out["frequency"] = frequency
        out["recency"] = last_day - first_day
        out["T"] = cday - first_day
        out["monetary_value"] = float(daily.iloc[1:].mean()) if frequency else 0.0
    else:
        out.update(frequency=0, recency=0, T=None, monetary_value=0.0)
    revenue = float(purchases["amount"].sum()) if orders else 0.0
    out["orders"] = orders
    out["revenue"] = revenue
    out["items"] = int(purchases["items"].sum()) if orders else 0
    out["first_purchase_ts"] = _opt(purchases["ts"].min()) if orders else None
    out["last_purchase_ts"] = _opt(purchases["ts"].max()) if orders else None
    out["avg_order_value"] = revenue / orders if orders else None
    out["days_since_last_purchase"] = cday - int(purchases["day"].max()) if orders else None
    for h in (7, 30, 90):
        recent = within(purchases, h)
        out[f"orders_{h}d"] = len(recent)
        out[f"revenue_{h}d"] = float(recent["amount"].sum()) if len(recent) else 0.0
    categories = purchases["category"].dropna()
    out["distinct_categories"] = int(categories.nunique())
    out["top_category"] = _top(categories)
    shares = categories.value_counts(normalize=True)
    out["category_share"] = {str(k): float(v) for k, v in shares.items()}

    # ---- browsing
    action = browsing["action"]
    out["browsing_events"] = len(browsing)
    sessions = browsing.dropna(subset=["session_id"]).groupby("session_id")["day"].min()
    out["sessions"] = len(sessions)
    out["sessions_30d"] = int(((sessions > cday - 30) & (sessions <= cday)).sum())
    recent30 = within(browsing, 30)
    out["product_views"] = int((action == "product_view").sum())
    out["product_views_30d"] = int((recent30["action"] == "product_view").sum())
    out["searches"] = int((action == "search").sum())
    out["cart_adds"] = int((action == "add_to_cart").sum())
    out["cart_adds_30d"] = int((recent30["action"] == "add_to_cart").sum())
    out["cart_removes"] = int((action == "remove_from_cart").sum())
    out["checkout_starts"] = int((action == "checkout_start").sum())
    out["wishlist_adds"] = int((action == "wishlist_add").sum())
    recent90 = within(browsing, 90)
    cart_days = set(recent90.loc[recent90["action"] == "add_to_cart", "day"].tolist())
    purchase_days = set(purchases["day"].tolist())
    out["cart_abandonment_rate"] = (
        1.0 - len(cart_days & purchase_days) / len(cart_days) if cart_days else None
    )
    views = out["product_views"]
    out["view_to_purchase_rate"] = orders / views if views else None
    out["top_platform"] = _top(browsing["platform"])
    out["last_browse_ts"] = _opt(browsing["ts"].max()) if len(browsing) else None

    # ---- support
    if len(support):
        ordered = support.sort_values(["ts", "event_id"])
        per_ticket = ordered.groupby("ticket_id").agg(
            first=("ts", "min"),
            last=("ts", "last"),
            status=("status", "last"),
            urgent=("priority", lambda p: bool((p == "urgent").any())),
        )
        per_ticket["first_day"] = per_ticket["first"] // MS_PER_DAY
        resolved = per_ticket[per_ticket["status"] == "resolved"]
        out["tickets"] = len(per_ticket)
        out["open_tickets"] = int((per_ticket["status"] != "resolved").sum())
        out["tickets_30d"] = len(within(per_ticket, 30, "first_day"))
        out["tickets_90d"] = len(within(per_ticket, 90, "first_day"))
        out["avg_resolution_days"] = (
            float(((resolved["last"] - resolved["first"]) / MS_PER_DAY).mean())
            if len(resolved)
            else None
        )
        out["urgent_tickets"] = int(per_ticket["urgent"].sum())
    else:
        out.update(
            tickets=0,
            open_tickets=0,
            tickets_30d=0,
            tickets_90d=0,
            avg_resolution_days=None,
            urgent_tickets=0,
        )
    escalated = support[support["status"] == "escalated"]
    out["escalations"] = len(escalated)
    out["escalations_90d"] = len(within(escalated, 90))
    out["reopened"] = int((support["status"] == "reopened").sum())

    # ---- feedback
    nps = feedback[feedback["kind"] == "nps"].sort_values(["ts", "event_id"])
    if len(nps):
        last = nps["score"].tolist()[-1]
        out["nps_last"] = last
        out["nps_category"] = "promoter" if last >= 9 else "passive" if last >= 7 else "detractor"
        out["nps_count"] = len(nps)
        out["nps_avg"] = float(nps["score"].mean())
        out["nps_trend"] = float(last - nps["score"].iloc[:-1].mean()) if len(nps) >= 2 else None
    else:
        out.update(nps_last=None, nps_category=None, nps_count=0, nps_avg=None, nps_trend=None)
    for kind in ("csat", "review"):
        scores = feedback.loc[feedback["kind"] == kind, "score"]
        out[f"{kind}_avg"] = float(scores.mean()) if len(scores) else None
        out[f"{kind}_count"] = len(scores)
    out["last_feedback_ts"] = _opt(feedback["ts"].max()) if len(feedback) else None

    # ---- activity
    activity = pd.concat(
        [frame[["ts", "day"]] for frame in (purchases, browsing, support, feedback) if len(frame)]
        or [pd.DataFrame({"ts": [], "day": []}, dtype="int64")]
    )
    if len(activity):
        out["last_event_ts"] = _opt(activity["ts"].max())
        out["days_since_last_event"] = cday - int(activity["day"].max())
    else:
        out["last_event_ts"] = out["days_since_last_event"] = None
    for h in (7, 30, 90):
        out[f"events_{h}d"] = len(within(activity, h))
    out["active_days_30d"] = int(within(activity, 30)["day"].nunique())

    # ---- profiles: per attribute, the value of the largest (ts, event_id)
    profile: dict[str, Any] = {}
    if len(profiles):
        values: list[Any] = []
        long = []
        for row in profiles.itertuples():
            for name, value in row.attributes.items():
                long.append((name, row.ts, row.event_id, len(values)))
                values.append(value)  # kept out of pandas: no dtype coercion
        attrs = pd.DataFrame(long, columns=["name", "ts", "event_id", "pos"])
        latest = attrs.sort_values(["ts", "event_id"]).groupby("name").tail(1)
        profile = {
            name: values[pos] for name, pos in zip(latest["name"], latest["pos"], strict=True)
        }
    out["profile"] = profile
    return out


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    return bool(a == b)


def _compare(path: str, actual: Any, expected: Any, tol: float, out: list[str]) -> None:
    if isinstance(actual, dict) and isinstance(expected, dict):
        for key in sorted(set(actual) | set(expected), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                out.append(f"{where}: missing (expected {expected[key]!r})")
            elif key not in expected:
                out.append(f"{where}: unexpected {actual[key]!r}")
            else:
                _compare(where, actual[key], expected[key], tol, out)
        return
    if (actual is None) != (expected is None) or not _close(actual, expected, tol):
        out.append(f"{path}: {actual!r} != expected {expected!r}")


def compare_features(actual: dict, expected: dict, tol: float = 1e-9) -> list[str]:
    """Describe every difference between two feature dicts (empty list: equal).

    Numbers compare with ``math.isclose(rel_tol=tol, abs_tol=tol)``, nested dicts
    (``category_share``, ``profile``) key by key, everything else with ``==``.

    Examples
    --------
    >>> compare_features({"a": 1.0, "b": {"x": 0.5}}, {"a": 1.0 + 1e-12, "b": {"x": 0.5}})
    []
    >>> compare_features({"a": None, "c": 2}, {"a": 0, "c": 2, "d": 1})
    ['a: None != expected 0', 'd: missing (expected 1)']
    """
    out: list[str] = []
    _compare("", actual, expected, tol, out)
    return out
