"""Smoke tests of ``streams.tools.bench``: the code paths with tiny sizes, no timing assertions.

The pure helpers (metrics parsing, histogram quantiles, inputs, the table) run
without Kafka; one integration test runs every phase end to end on the real
broker with minimal sizes and checks that the table is complete.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import orjson
import pytest

from streams.ops.broker import metadata_ping
from streams.settings import Settings
from streams.tools import bench
from streams.tools.bench import (
    BenchConfig,
    LatencyResult,
    MemoryPoint,
    Results,
    Throughput,
    WorkerRun,
    changelog_records,
    events_handled,
    histogram_buckets,
    histogram_quantile,
    parse_args,
    parse_metrics,
    render_table,
    synthetic_records,
)

METRICS = """\
# HELP segmenter_events_processed_total Events validated and applied.
# TYPE segmenter_events_processed_total counter
segmenter_events_processed_total{topic="purchases"} 7.0
segmenter_events_processed_total{topic="browsing"} 3.0
segmenter_events_duplicate_total{topic="browsing"} 1.0
segmenter_events_rejected_total{reason="invalid_json",topic="purchases"} 2.0
segmenter_event_to_emit_latency_seconds_bucket{le="0.01",output="churn_risk"} 1.0
segmenter_event_to_emit_latency_seconds_bucket{le="0.1",output="churn_risk"} 2.0
segmenter_event_to_emit_latency_seconds_bucket{le="+Inf",output="churn_risk"} 2.0
segmenter_event_to_emit_latency_seconds_bucket{le="0.01",output="segment_changes"} 0.0
segmenter_event_to_emit_latency_seconds_bucket{le="0.1",output="segment_changes"} 2.0
segmenter_event_to_emit_latency_seconds_bucket{le="+Inf",output="segment_changes"} 2.0
"""


def test_counters_and_histogram_from_the_exposition() -> None:
    samples = parse_metrics(METRICS)
    assert events_handled(samples) == 13
    buckets = histogram_buckets(samples, "segmenter_event_to_emit_latency_seconds")
    assert buckets == [(0.01, 1.0), (0.1, 4.0), (math.inf, 4.0)]
    median = histogram_quantile(0.5, buckets)
    assert median is not None and 0.01 < median < 0.1


def test_inputs_are_valid_events() -> None:
    from schemas import validate

    records = list(synthetic_records(3, per_customer=2, ts_ms=1_767_225_600_000, id_tag="x"))
    assert [t for t, _, _ in records] == ["profiles", "purchases"] * 3
    for topic, key, value in records:
        assert validate(topic, value)["customer_id"] == key.decode()
    history = list(bench.history_records(20, 50, seed=1, end_ms=1_767_225_600_000, bad=0, dup=0))
    assert len(history) == 50
    assert all(orjson.loads(v)["customer_id"] == k.decode() for _, k, v in history)


def test_changelog_records_carry_a_real_customer_state() -> None:
    template = bench.customer_state_template(1_767_225_600_000)
    state = orjson.loads(template)
    assert {"f", "dedup", "seg", "churn", "seq"} <= set(state)
    (partition, key, value), *_ = list(changelog_records(3, template, 4))
    assert 0 <= partition < 4 and key == b'"m0000000"' and value == template


def test_the_table_holds_every_figure(tmp_path: Path) -> None:
    config = BenchConfig.for_args(quick=True)
    results = Results(config=config, command="python -m streams.tools.bench --quick")
    results.facts = {"cpus": "2", "cpu": "test", "load_start": "1", "load_end": "2"}
    results.baseline = Throughput(1000, 1.0, 0.5)
    results.worker = WorkerRun(Throughput(500, 2.0, 1.0), 3.0, 300_000, 280_000, 200_000)
    results.latency = LatencyResult(
        rate=250, seconds=10, sent=2500, matched=900, outputs=1000,
        emit_ms=(5.0, 50.0), emit_max_ms=80.0, emit_thirds_ms=(4.0, 5.0, 6.0),
        consume_ms=(6.0, 60.0),
        histogram_ms=(4.0, 45.0), histogram_count=950,
    )  # fmt: skip
    results.empty_rss_kb = 200_000
    results.memory = [
        MemoryPoint(1000, 5.0, 210_000, 220_000, 230_000, Throughput(10, 1.0), 0.1, 200_000),
        MemoryPoint(2000, 6.0, 215_000, 230_000, 240_000, Throughput(20, 1.0), 0.1, 200_000),
    ]
    table = render_table(results)
    expected = ("1,000 events/s", "250 events/s", "25.0%", "5.0 ms / 50.0 ms", "20,000.0 kB")
    for figure in expected:
        assert figure in table, figure
    assert "--quick" in table
    assert "evaluating nothing" not in table  # (a product figure)


def test_the_floor_runs_workers_that_evaluate_nothing_and_says_so() -> None:
    config = parse_args(["--floor", "--quick"])
    assert config.floor
    assert bench.worker_command(None, config.floor)[-3:] == [
        "-m",
        "streams.tools.floor_worker",
        "worker",
    ]
    results = Results(config=config, command="python -m streams.tools.bench --floor")
    results.facts = {"cpus": "2", "cpu": "test", "load_start": "1", "load_end": "2"}
    results.worker = WorkerRun(Throughput(500, 2.0, 1.0), 3.0, 300_000, 280_000, 200_000)
    assert "evaluating nothing" in render_table(results)


def test_the_floor_worker_is_the_segmenter_command_line() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "streams.tools.floor_worker", "worker", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "worker" in done.stdout.lower()


@pytest.mark.integration
def test_every_phase_runs_on_the_broker(tmp_path: Path) -> None:
    """Minimal sizes: a few hundred events, seconds of latency, a tiny population."""
    try:
        asyncio.run(metadata_ping(Settings().kafka_bootstrap))
    except Exception:
        pytest.skip("no Kafka broker (make test starts one)")
    config = BenchConfig.for_args(events=300, customers=30)
    config.latency_seconds = 2.0
    config.warmup_seconds = 1.0
    config.memory_customers = (50,)
    config.idle_seconds = 1.0
    config.timeout = 240.0
    config.output = tmp_path / "results.md"
    results = bench.run(config, "pytest")
    table = render_table(results)
    assert "phase attempt 2 failed" not in table, table
    assert results.baseline and results.baseline.events == 300
    assert results.worker and results.worker.throughput.events > 0
    assert results.latency and results.latency.outputs > 0
    assert results.memory and results.memory[0].rss_kb
