"""A holdout experiment through the real broker, two workers and a crash.

A welcome campaign to new customers (their first purchase puts them into
``lifecycle.new``) has a known effect: the simulator makes half of the
treatment arm buy once more for 150 within the 14-day window, and nobody in the
holdout (``streams.tools.simulator.Campaign``). Checked:

* every event that puts a customer into the segment carries their arm, which is
  the published keyed hash, identical on both workers and after a worker is
  killed and restarted (its re-emissions included);
* each entrant is exposed once (re-emitted events do not count again), and the
  holdout share is within sampling error of the configured 30 %;
* the per-arm outcomes equal a pandas computation over the same events;
* the uplift in revenue per customer is significant and its 95 % interval holds
  the true effect (75).
"""

from __future__ import annotations

import hashlib
import math
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from models.eventtime import MS_PER_DAY, parse_ts
from schemas import validate_output
from streams.tools.simulator import Campaign, Simulation
from tests.integration.conftest import Stack, handled_total, wait_for

HOLDOUT, WINDOW = 0.3, 14
CAMPAIGN = Campaign("welcome", holdout=HOLDOUT, response_rate=0.5, amount=150.0, window_days=WINDOW)
CONFIG = f"""
experiments:
  - name: welcome
    segment: lifecycle.new
    holdout: {HOLDOUT}
    window_days: {WINDOW}
    description: welcome e-mail series for first-time buyers
"""
BEHAVIOUR = ("purchases", "browsing", "support", "feedback")


def arm(customer: str) -> str:
    """The recipe of docs/segments.md, written out independently."""
    digest = hashlib.blake2b(customer.encode(), key=b"welcome", digest_size=8).digest()
    return "holdout" if int.from_bytes(digest, "big") / 2**64 < HOLDOUT else "treatment"


@pytest.fixture
def experiment_stack(stack_factory: Any, tmp_path: Path) -> Stack:
    config = tmp_path / "segments.yaml"
    config.write_text(CONFIG)
    stack: Stack = stack_factory(partitions=4, SEGMENTER_SEGMENTS_CONFIG=str(config))
    return stack


def expected_outcomes(
    events: list[tuple[str, dict[str, Any]]],
    entries: dict[str, int],
    churn: list[dict[str, Any]],
    today: int,
) -> pd.DataFrame:
    """Per arm: completed windows and their outcomes, the obvious way."""
    rows = []
    for topic, event in events:
        if topic in BEHAVIOUR:
            rows.append(
                (event["customer_id"], parse_ts(event["ts"]), topic, event.get("amount", 0.0))
            )
    frame = pd.DataFrame(rows, columns=["customer", "ts", "topic", "amount"])
    levels = pd.DataFrame(
        [(c["customer_id"], parse_ts(c["ts"]), c["level"]) for c in churn],
        columns=["customer", "ts", "level"],
    ).sort_values("ts")
    outcomes = []
    for customer, entry in entries.items():
        end = (entry // MS_PER_DAY + WINDOW) * MS_PER_DAY
        if end > today * MS_PER_DAY:
            continue  # still open
        mine = frame[(frame["customer"] == customer) & (frame["ts"] >= entry) & (frame["ts"] < end)]
        # (the entering purchase itself is not an outcome)
        mine = mine[~((mine["ts"] == entry) & (mine["topic"] == "purchases"))]
        purchases = mine[mine["topic"] == "purchases"]
        level = levels[(levels["customer"] == customer) & (levels["ts"] <= end)]["level"]
        outcomes.append(
            {
                "arm": arm(customer),
                "active": len(mine) > 0,
                "purchased": len(purchases) > 0,
                "revenue": purchases["amount"].sum(),
                "high": len(level) > 0 and level.iloc[-1] == "high",
            }
        )
    return (
        pd.DataFrame(outcomes)
        .groupby("arm")
        .agg(
            completed=("active", "size"),
            active_share=("active", "mean"),
            purchase_share=("purchased", "mean"),
            revenue_per_customer=("revenue", "mean"),
            churn_high_share=("high", "mean"),
        )
    )


async def test_arms_exposures_outcomes_and_the_known_uplift(experiment_stack: Stack) -> None:
    stack = experiment_stack
    sim = Simulation(
        customers=600, days=35, seed=8, personas={"support_heavy_detractor": 1.0}, campaign=CAMPAIGN
    )
    events = list(sim.events())
    cut = sim.start_ms + 18 * MS_PER_DAY
    early = [(t, e) for t, e in events if parse_ts(e["ts"]) < cut]
    late = events[len(early) :]
    first, second = stack.worker("w1"), stack.worker("w2")
    await stack.produce(early)
    wait_for(lambda: handled_total([first, second]) >= len(early) * 0.6, timeout=300)
    first.stop(signal.SIGKILL)  # mid-stream: its uncommitted work is done again
    first.start()
    first.wait_ready()
    await stack.produce(late)

    clock_ms = max(parse_ts(e["ts"]) for _, e in events)
    today = clock_ms // MS_PER_DAY

    async def read(topic: str) -> list[dict[str, Any]]:
        return [r["value"] for r in await stack.consume(topic, until=lambda rs: False, timeout=6)]

    # All handled, every window that ended by today closed (the daily evaluation).
    first_purchase: dict[str, int] = {}
    for topic, event in events:
        if topic == "purchases":
            first_purchase.setdefault(event["customer_id"], parse_ts(event["ts"]))
    closable = sum((ts // MS_PER_DAY + WINDOW) <= today for ts in first_purchase.values())

    def settled() -> bool:
        status, body = second.get("/experiments")
        arms = body["experiments"][0]["arms"]
        return status == 200 and sum(a["completed"] for a in arms.values()) == closable

    wait_for(settled, timeout=300, interval=2)

    changes = await read("segment-changes")
    entries: dict[str, int] = {}
    for change in changes:
        validate_output("segment-changes", change)
        if change["segment_type"] == "lifecycle" and change["current"] == "new":
            assert change["experiments"] == [{"name": "welcome", "arm": arm(change["customer_id"])}]
            ts = parse_ts(change["ts"])
            assert entries.setdefault(change["customer_id"], ts) == ts  # a re-emission
        else:
            assert change["experiments"] == []
    churn = await read("churn-risk")
    for record in churn:
        assert record["experiments"] == []
    assert entries.keys() == first_purchase.keys()

    # Exposure once per customer and entry; holdout share within sampling error.
    status, body = first.get("/experiments")
    assert status == 200
    (welcome,) = body["experiments"]
    arms = welcome["arms"]
    assert arms["treatment"]["customers"] + arms["holdout"]["customers"] == len(entries)
    holdouts = sum(arm(c) == "holdout" for c in entries)
    assert arms["holdout"]["customers"] == holdouts
    assert abs(holdouts / len(entries) - HOLDOUT) < 3 * math.sqrt(
        HOLDOUT * (1 - HOLDOUT) / len(entries)
    )
    assert welcome["holdout_share_observed"] == pytest.approx(holdouts / len(entries))

    # Outcomes: the same as pandas over the same events.
    expected = expected_outcomes(events, entries, churn, today)
    for name in ("treatment", "holdout"):
        have = arms[name]
        assert have["completed"] == expected.loc[name, "completed"]
        for outcome, value in have["outcomes"].items():
            assert value == pytest.approx(expected.loc[name, outcome], abs=1e-9), (name, outcome)

    # The known effect is recovered: significant, inside the 95 % interval.
    revenue = welcome["uplift"]["revenue_per_customer"]
    low, high = revenue["ci95"]
    print(f"entrants {len(entries)}, holdout share {holdouts / len(entries):.3f}, revenue uplift "
          f"{revenue['estimate']:.2f} [{low:.2f}, {high:.2f}], true {CAMPAIGN.effect}")  # fmt: skip
    assert revenue["significant"] and low > 0
    assert low <= CAMPAIGN.effect <= high, (low, CAMPAIGN.effect, high)
