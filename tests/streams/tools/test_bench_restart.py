"""The restart benchmark's history: late by at most the given days, thinned browsing."""

from __future__ import annotations

import orjson

from models.eventtime import MS_PER_DAY, parse_ts
from streams.tools.bench import Throughput
from streams.tools.bench_restart import RestartResult, shuffled_history


def event_times(records: list[tuple[str, bytes, bytes]]) -> list[int]:
    return [parse_ts(orjson.loads(value)["ts"]) for _, _, value in records]


def test_events_arrive_out_of_order_but_never_more_than_late_days_late() -> None:
    records = shuffled_history(customers=30, days=40, late_days=2.0, seed=3)
    times = event_times(records)
    newest = 0
    overtaken = 0
    for ts in times:
        assert ts >= newest - 2 * MS_PER_DAY  # (arrival = time + up to 2 days)
        overtaken += ts < newest
        newest = max(newest, ts)
    assert overtaken > len(times) / 10
    assert all(key == orjson.loads(value)["customer_id"].encode() for _, key, value in records)


def test_browsing_is_thinned_and_the_rest_kept() -> None:
    full = shuffled_history(customers=30, days=40, late_days=0.0, seed=3, browsing_kept=1.0)
    thin = shuffled_history(customers=30, days=40, late_days=0.0, seed=3, browsing_kept=0.1)
    count = {
        name: sum(t == "browsing" for t, _, _ in rs)
        for name, rs in (("full", full), ("thin", thin))
    }
    assert 0.05 < count["thin"] / count["full"] < 0.15
    assert len(full) - count["full"] == len(thin) - count["thin"]


def test_the_report_gives_the_ratios_the_issue_asks_for() -> None:
    result = RestartResult(1000, Throughput(500, 1.0), Throughput(300, 1.0), Throughput(400, 1.0))
    text = "\n".join(result.lines())
    assert "60% of the first worker" in text and "restarted = 75% of it" in text
