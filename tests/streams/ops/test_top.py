"""The live view's data: /metrics and /segments parsed, rates, notable changes, frames.

The numbers come from the worker's own code (``streams.worker.metrics.Metrics``,
``streams.worker.web.segment_catalogue``), not from hand-written samples, so a
renamed metric or field breaks these tests.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from rich.console import Console

from models.churn import ChurnScorer
from models.processing import CustomerProcessor
from models.rules import RuleEngine, RulesConfig
from streams.ops.top.collect import (
    MetricsSample,
    build_overview,
    parse_metrics,
    parse_segments,
    rate,
)
from streams.ops.top.notable import NotableFeed
from streams.ops.top.render import frame, summary_line
from streams.settings import Settings
from streams.worker.metrics import Metrics, render
from streams.worker.runtime import Runtime
from streams.worker.web import segment_catalogue


def worker_metrics(consumed: int, lag: dict[tuple[str, int], int], version: int) -> str:
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    for _ in range(consumed):
        metrics.consumed("purchases")
    metrics.set_consumer_lag(lag)
    metrics.model_refreshed(version, 4)
    metrics.set_churn_levels({"low": 10, "medium": 3, "high": 1})
    metrics.set_table_keys("customers", 14)
    metrics.set_stream_clock(1_767_225_600_000)
    metrics.set_ready(True)
    return render(metrics.registry).decode()


def test_metrics_of_several_workers_are_summed() -> None:
    a = worker_metrics(30, {("purchases", 0): 5, ("browsing", 0): 7}, version=3)
    b = worker_metrics(12, {("purchases", 1): 2}, version=4)
    sample = parse_metrics([a, b], at=10.0)
    assert sample.workers == 2 and sample.ready == 2
    assert sample.consumed == 42
    assert sample.lag == 14
    assert sample.model_version == 4  # the newest any worker holds
    assert sample.clusters == 4
    assert sample.customers == 28
    assert sample.churn_levels == {"low": 20, "medium": 6, "high": 2}
    assert sample.stream_clock_s == 1_767_225_600


def test_rate_is_events_per_second_and_unknown_across_a_restart() -> None:
    before = parse_metrics([worker_metrics(100, {}, 1)], at=0.0)
    after = parse_metrics([worker_metrics(400, {}, 1)], at=3.0)
    assert rate(before, after) == 100.0
    assert rate(None, after) is None
    restarted = parse_metrics([worker_metrics(5, {}, 1)], at=6.0)  # counters start again
    assert rate(after, restarted) is None
    one_left = MetricsSample(at=9.0, consumed=1000.0, workers=1)
    two = MetricsSample(at=6.0, consumed=500.0, workers=2)
    assert rate(two, one_left) is None  # a worker stopped answering: no made-up rate


def runtime_with_stats() -> Runtime:
    processor = CustomerProcessor(rules=RuleEngine(RulesConfig()), scorer=ChurnScorer())
    rt = Runtime(Settings(), Metrics(CollectorRegistry(), process_metrics=False), processor, "w")
    # What two partitions published on the stream-clock topic after their sweeps.
    rt.remote_stats = {
        "p0": {
            "sizes": {"lifecycle": {"active": 5, "at_risk": 2}, "cluster": {"c0": 6}},
            "sizes_day_ago": {"lifecycle": {"active": 4, "at_risk": 3}},
            "churn_levels": {"low": 5, "high": 2},
            "customers": 7,
        },
        "p1": {
            "sizes": {"lifecycle": {"active": 3}, "cluster": {"c0": 1, "c1": 2}},
            "sizes_day_ago": {"lifecycle": {"active": 3}},
            "churn_levels": {"low": 2, "medium": 1},
            "customers": 3,
        },
    }
    rt.model_message = {
        "snapshot": {
            "model_version": "km-7",
            "k": 2,
            "labels": {"c0": "frequent buyers", "c1": "browsers"},
            "profiles": {"c0": {}, "c1": {}},
        }
    }
    return rt


def test_segments_document_gives_sizes_growth_and_deployment_totals() -> None:
    sample = parse_segments(segment_catalogue(runtime_with_stats()))
    assert sample.customers == 10
    assert sample.churn_levels == {"low": 7, "high": 2, "medium": 1}
    assert (sample.model_version, sample.clusters) == ("km-7", 2)
    rows = {(r.segment_type, r.id): r for r in sample.rows}
    assert (rows["lifecycle", "active"].size, rows["lifecycle", "active"].growth_1d) == (8, 1)
    assert (rows["lifecycle", "at_risk"].size, rows["lifecycle", "at_risk"].growth_1d) == (2, -1)
    assert rows["cluster", "c0"].size == 7 and rows["cluster", "c1"].label == "browsers"


def test_overview_prefers_deployment_totals_and_falls_back_to_metrics() -> None:
    metrics = parse_metrics([worker_metrics(10, {("purchases", 0): 3}, 7)], at=1.0)
    previous = parse_metrics([worker_metrics(4, {}, 7)], at=0.0)
    segments = parse_segments(segment_catalogue(runtime_with_stats()))
    overview = build_overview(["http://w"], metrics, previous, segments)
    assert overview.events_per_s == 6.0 and overview.lag == 3
    assert overview.customers == 10  # all partitions, not this worker's 14 table keys
    sizes = [r.size for r in overview.segments["lifecycle"]]
    assert sizes == sorted(sizes, reverse=True) and sizes[:2] == [8, 2]  # largest first
    older = parse_segments({"segments": [], "model_version": None})  # no totals
    fallback = build_overview(["http://w"], metrics, None, older)
    assert fallback.customers == 14 and fallback.churn_levels["medium"] == 3
    assert fallback.model_version == "km-7" and fallback.events_per_s is None


def change(event_id: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "ts": "2026-03-02T00:00:00.000Z", "customer_id": "c1",
            "initial": False, "reasons": ["no purchase for 40 days"], **fields}  # fmt: skip


def test_notable_changes_are_alerts_and_cluster_moves_each_once() -> None:
    feed = NotableFeed(keep=3)
    records = [
        (
            "segment-changes",
            change("a", segment_type="lifecycle", previous="active", current="at_risk"),
        ),
        (
            "segment-changes",
            change("a", segment_type="lifecycle", previous="active", current="at_risk"),
        ),  # re-sent: same id
        ("segment-changes", change("b", segment_type="value", previous="low", current="mid")),
        (
            "segment-changes",
            change("c", segment_type="cluster", previous=None, current="c1", initial=True),
        ),
        ("segment-changes", change("d", segment_type="cluster", previous="c0", current="c1")),
        ("churn-risk", change("e", level="high", previous_level="medium")),
        ("churn-risk", change("f", level="medium", previous_level="low")),
        ("churn-risk", change("g", level="high", previous_level=None, initial=True)),
        (
            "segment-changes",
            change("h", segment_type="lifecycle", previous="at_risk", current="lapsed"),
        ),
    ]
    added = [feed.add(topic, record) for topic, record in records]
    assert added == [True, False, False, False, True, True, False, False, True]
    assert feed.seen_total == 4
    assert [c.event_id for c in feed.latest] == ["h", "e", "d"]  # newest first, 3 kept
    assert [c.severity for c in feed.latest] == ["alert", "alert", "info"]


def test_a_frame_shows_every_panel_and_a_log_line_the_numbers() -> None:
    metrics = parse_metrics([worker_metrics(10, {("purchases", 0): 3}, 7)], at=1.0)
    previous = parse_metrics([worker_metrics(4, {}, 7)], at=0.0)
    overview = build_overview(
        ["http://w"], metrics, previous, parse_segments(segment_catalogue(runtime_with_stats()))
    )
    feed = NotableFeed()
    feed.add("churn-risk", change("e", level="high", previous_level="medium"))
    console = Console(record=True, width=140, force_terminal=True)
    console.print(frame(overview, feed.latest, feed.seen_total))
    text = console.export_text()
    for title in ("Segmenter", "Segments", "Churn risk", "notable changes"):
        assert title in text
    assert "customers 10" in text and "events/s 6" in text and "km-7 · k=2" in text
    assert "churn medium → high" in text and "no purchase for 40 days" in text
    line = summary_line(overview, feed.seen_total)
    assert "events/s 6" in line and "customers 10" in line and "churn low 7 medium 1 high 2" in line
    assert "lifecycle: active 8 (+1)" in line


async def test_a_worker_that_does_not_answer_is_named_and_left_out() -> None:
    import aiohttp

    from streams.ops.top.collect import fetch_overview
    from tests.integration.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        overview, sample = await fetch_overview(session, [url], None)
    assert overview.reachable == 0 and sample.workers == 0
    assert overview.events_per_s is None and overview.customers is None
    assert overview.errors and all(url in error for error in overview.errors)
    assert "unreachable: 1" in summary_line(overview, 0)


def test_a_frame_fits_a_small_terminal() -> None:
    metrics = parse_metrics([worker_metrics(10, {}, 7)], at=1.0)
    overview = build_overview(
        ["http://w"], metrics, None, parse_segments(segment_catalogue(runtime_with_stats()))
    )
    feed = NotableFeed()
    for i in range(10):
        feed.add("churn-risk", change(f"e{i}", level="high", previous_level="low"))
    for height in (24, 50):
        console = Console(record=True, width=100, height=height, force_terminal=True)
        console.print(frame(overview, feed.latest, feed.seen_total, None, height))
        lines = console.export_text().splitlines()
        assert len(lines) <= height - 3  # the demo prints three lines above the view
        assert all(t in "\n".join(lines) for t in ("Segmenter", "Churn risk", "notable changes"))
