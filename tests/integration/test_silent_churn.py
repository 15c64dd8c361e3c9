"""A customer who simply stops is flagged ``high`` once, without events of their own."""

from __future__ import annotations

import itertools
import time

from schemas import validate_output
from tests.integration.conftest import Stack, wait_for

DAY = 86_400_000


def browse(customer: str, n: int, ts: int) -> tuple[str, dict]:
    return ("browsing", {"event_id": f"{customer}-b{n}", "customer_id": customer, "ts": ts,
                         "session_id": f"{customer}-s{n}", "action": "product_view"})  # fmt: skip


def buy(customer: str, n: int, ts: int) -> tuple[str, dict]:
    return ("purchases", {"event_id": f"{customer}-o{n}", "customer_id": customer, "ts": ts,
                          "order_id": f"{customer}-{n}", "amount": 40.0, "items": 1,
                          "category": "books", "channel": "web"})  # fmt: skip


def history(customer: str, first_day: int, days: int, t0: int) -> list[tuple[str, dict]]:
    """A steady customer: a visit every day, a purchase every third day."""
    events = []
    for d in range(first_day, first_day + days):
        ts = t0 + d * DAY + 10 * 3_600_000
        events.append(browse(customer, d, ts))
        if d % 3 == 0:
            events.append(buy(customer, d, ts + 60_000))
    return events


async def test_silent_customer_gets_one_high_event_without_events_of_their_own(
    stack: Stack,
) -> None:
    worker = stack.worker()
    t0 = (int(time.time() * 1000) // DAY - 120) * DAY
    quiet = history("quiet", 0, 40, t0)  # stops after day 40
    others = history("busy-1", 0, 100, t0) + history("busy-2", 0, 100, t0)
    # Merge by event time: the stream clock moves on past quiet's last visit.
    await stack.produce(sorted(quiet + others, key=lambda r: r[1]["ts"]))
    last_quiet_ts = max(e["ts"] for _, e in quiet)

    def quiet_events(records: list[dict]) -> list[dict]:
        return [r["value"] for r in records if r["key"] == "quiet"]

    records = await stack.consume(
        "churn-risk",
        until=lambda rs: any(e["level"] == "high" for e in quiet_events(rs)),
        timeout=120,
    )
    highs = [e for e in quiet_events(records) if e["level"] == "high"]
    assert len(highs) == 1, quiet_events(records)
    assert highs[0]["ts"] > _iso(last_quiet_ts)  # raised by the clock, not by an event
    assert highs[0]["reasons"] and any("no activity" in r for r in highs[0]["reasons"])

    # The clock moves on another 15 days: no second `high` for the same customer.
    await stack.produce(
        sorted(history("busy-1", 100, 15, t0) + history("busy-2", 100, 15, t0),
               key=lambda r: r[1]["ts"])
    )  # fmt: skip
    wait_for(lambda: worker.get("/customers/busy-1")[1]["features"]["last_event_ts"]
             >= _iso(t0 + 114 * DAY), timeout=90)  # fmt: skip
    time.sleep(5)  # a few sweep ticks at the new clock
    records = await stack.consume("churn-risk", until=lambda rs: False, timeout=5)
    levels = [e["level"] for e in quiet_events(records)]
    assert levels.count("high") == 1, levels
    # Every event is a change of level: never the same level twice in a row.
    assert all(a != b for a, b in itertools.pairwise(levels)), levels
    for record in records:
        validate_output("churn-risk", record["value"])
    status, body = worker.get("/customers/quiet")
    assert status == 200 and body["churn_risk"]["level"] == "high"


def _iso(ms: int) -> str:
    from models.eventtime import format_ts

    return format_ts(ms)
