"""streams.worker.metrics: registries, naming conventions, helpers."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.worker import metrics as sm
from streams.worker.metrics import (
    METRIC_NAMES,
    REJECT_REASONS,
    Metrics,
    exported_names,
    exposition,
    render,
)

NAME_RE = re.compile(r"^segmenter_[a-z][a-z0-9_]*[a-z0-9]$")
FORBIDDEN_LABELS = {"customer_id", "customer", "event_id", "session_id", "order_id", "ticket_id"}


def _families(registry: CollectorRegistry):
    return [f for f in registry.collect() if f.name.startswith("segmenter_")]


def test_two_registries_do_not_clash() -> None:
    a, b = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    a.processed("purchases")
    assert a.sample("segmenter_events_processed_total", topic="purchases") == 1.0
    assert b.sample("segmenter_events_processed_total", topic="purchases") == 0.0


def test_many_apps_in_one_process() -> None:
    for _ in range(20):
        Metrics(CollectorRegistry())


def test_same_registry_twice_is_an_error() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    with pytest.raises(ValueError):
        Metrics(registry)


def test_default_registry_untouched() -> None:
    from prometheus_client import REGISTRY

    Metrics(CollectorRegistry())
    assert not [n for n in REGISTRY._names_to_collectors if n.startswith("segmenter_")]


def test_names_follow_conventions() -> None:
    families = _families(Metrics(CollectorRegistry()).registry)
    assert len(families) >= 22
    for family in families:
        assert NAME_RE.match(family.name), family.name
        assert family.documentation.strip(), family.name
        if family.type == "counter":
            assert not family.name.endswith("_total")  # client adds it on exposition
        if family.type == "histogram":  # a base unit in the name
            assert family.name.endswith(("_seconds", "_messages")), family.name
        if family.type == "gauge":
            assert not family.name.endswith("_total"), family.name
        assert not re.search(r"_(ms|millis|milliseconds|minutes|hours)\b", family.name)


def test_exposed_counters_end_in_total() -> None:
    text = render(Metrics(CollectorRegistry()).registry).decode()
    for family in text_string_to_metric_families(text):
        if family.name.startswith("segmenter_") and family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
    for line in text.splitlines():
        if line.startswith("# TYPE segmenter_") and line.endswith(" counter"):
            assert line.split()[2].endswith("_total"), line


def test_no_customer_labels_anywhere() -> None:
    m = Metrics(CollectorRegistry())
    _touch_everything(m)
    for family in _families(m.registry):
        for s in family.samples:
            assert not FORBIDDEN_LABELS & s.labels.keys(), (s.name, s.labels)


def test_expected_metric_names_exported() -> None:
    expected = {
        "segmenter_events_consumed_total",
        "segmenter_events_processed_total",
        "segmenter_events_rejected_total",
        "segmenter_events_duplicate_total",
        "segmenter_dead_letters_total",
        "segmenter_event_to_emit_latency_seconds_bucket",
        "segmenter_processing_seconds_bucket",
        "segmenter_batch_messages_bucket",
        "segmenter_commit_seconds_bucket",
        "segmenter_consumer_lag",
        "segmenter_table_keys",
        "segmenter_segment_size",
        "segmenter_segment_transitions_total",
        "segmenter_segment_flaps_total",
        "segmenter_churn_risk_level_customers",
        "segmenter_churn_risk_events_total",
        "segmenter_model_version",
        "segmenter_model_last_refresh_timestamp_seconds",
        "segmenter_model_clusters",
        "segmenter_stream_clock_timestamp_seconds",
        "segmenter_outputs_total",
        "segmenter_privacy_requests_total",
        "segmenter_worker_ready",
    }
    assert expected <= METRIC_NAMES
    assert expected <= exported_names(Metrics(CollectorRegistry()).registry)


def test_metric_names_match_real_exposition() -> None:
    """Every sample in the exposition is in METRIC_NAMES (after touching every series)."""
    m = Metrics(CollectorRegistry())
    _touch_everything(m)
    exposed = {
        s.name
        for f in text_string_to_metric_families(generate_latest(m.registry).decode())
        for s in f.samples
        if s.name.startswith("segmenter_")
    }
    assert exposed == METRIC_NAMES


@pytest.mark.parametrize("accept", ["text/plain", "application/openmetrics-text; version=1.0.0"])
def test_no_created_series_in_the_exposition(accept: str) -> None:
    """/metrics carries one series per counter or histogram sample, no `_created` twin."""
    m = Metrics(CollectorRegistry())
    _touch_everything(m)
    body, _ = exposition(m.registry, accept)
    text = body.decode()
    assert "segmenter_events_processed_total{" in text
    assert "segmenter_event_to_emit_latency_seconds_bucket{" in text
    assert "_created" not in text


def test_labels() -> None:
    m = Metrics(CollectorRegistry())
    labels: dict[str, set[str]] = {f.name: set() for f in _families(m.registry)}
    _touch_everything(m)
    for f in _families(m.registry):
        for s in f.samples:
            labels[f.name] |= s.labels.keys() - {"le"}
    assert labels["segmenter_events_rejected"] == {"topic", "reason"}
    assert labels["segmenter_consumer_lag"] == {"topic", "partition"}
    assert labels["segmenter_segment_size"] == {"segment_type", "segment"}
    assert labels["segmenter_event_to_emit_latency_seconds"] == {"output"}
    assert labels["segmenter_processing_seconds"] == {"topic"}
    assert labels["segmenter_worker_ready"] == set()


def test_histogram_buckets() -> None:
    assert sm.EMIT_LATENCY_BUCKETS[0] == pytest.approx(0.001)
    assert sm.EMIT_LATENCY_BUCKETS[-1] == pytest.approx(60.0)
    assert sm.PROCESSING_BUCKETS[0] == pytest.approx(1e-5)
    assert sm.PROCESSING_BUCKETS[-1] == pytest.approx(1.0)
    for buckets in (sm.EMIT_LATENCY_BUCKETS, sm.PROCESSING_BUCKETS):
        assert list(buckets) == sorted(set(buckets))


def test_series_precreated_at_zero() -> None:
    m = Metrics(CollectorRegistry())
    for topic in sm.INPUT_TOPICS:
        assert m.sample("segmenter_events_consumed_total", topic=topic) == 0.0
        for reason in REJECT_REASONS:
            assert m.sample("segmenter_events_rejected_total", topic=topic, reason=reason) == 0.0
    for level in sm.CHURN_LEVELS:
        assert m.sample("segmenter_churn_risk_events_total", level=level) == 0.0
    assert m.sample("segmenter_worker_ready") == 0.0


def test_counter_helpers_increment_the_right_series() -> None:
    m = Metrics(CollectorRegistry())
    m.consumed("purchases")
    m.consumed("purchases")
    m.processed("purchases")
    m.rejected("browsing", "schema")
    m.rejected("browsing", "made-up")
    m.duplicate("support")
    m.dead_letter("browsing")
    m.output("segment-changes", 3)
    m.transition("lifecycle")
    m.transition("lifecycle", flap=True)
    m.churn_event("high")
    m.privacy_request("erase")
    s = m.sample
    assert s("segmenter_events_consumed_total", topic="purchases") == 2.0
    assert s("segmenter_events_consumed_total", topic="browsing") == 0.0
    assert s("segmenter_events_processed_total", topic="purchases") == 1.0
    assert s("segmenter_events_rejected_total", topic="browsing", reason="schema") == 1.0
    assert s("segmenter_events_rejected_total", topic="browsing", reason="other") == 1.0
    assert s("segmenter_events_rejected_total", topic="browsing", reason="made-up") is None
    assert s("segmenter_events_duplicate_total", topic="support") == 1.0
    assert s("segmenter_dead_letters_total", topic="browsing") == 1.0
    assert s("segmenter_outputs_total", topic="segment-changes") == 3.0
    assert s("segmenter_segment_transitions_total", segment_type="lifecycle") == 2.0
    assert s("segmenter_segment_flaps_total", segment_type="lifecycle") == 1.0
    assert s("segmenter_churn_risk_events_total", level="high") == 1.0
    assert s("segmenter_churn_risk_events_total", level="low") == 0.0
    assert s("segmenter_privacy_requests_total", action="erase") == 1.0


def test_user_defined_segment_type_gets_its_own_series() -> None:
    m = Metrics(CollectorRegistry(), segment_types=["cluster", "vip"])
    assert m.sample("segmenter_segment_transitions_total", segment_type="vip") == 0.0
    m.transition("big_spenders")
    assert m.sample("segmenter_segment_transitions_total", segment_type="big_spenders") == 1.0


def test_emit_latency() -> None:
    m = Metrics(CollectorRegistry())
    assert m.observe_emit_latency("segment_changes", 10_000, now=10.5) == pytest.approx(0.5)
    # broker clock ahead of ours: counted as 0, never negative
    assert m.observe_emit_latency("segment_changes", 20_000, now=10.0) == 0.0
    assert m.observe_emit_latency("segment_changes", None) is None
    assert m.observe_emit_latency("segment_changes", -1) is None
    name = "segmenter_event_to_emit_latency_seconds"
    assert m.sample(f"{name}_count", output="segment_changes") == 2.0
    assert m.sample(f"{name}_sum", output="segment_changes") == pytest.approx(0.5)
    assert m.sample(f"{name}_bucket", output="segment_changes", le="0.001") == 1.0
    assert m.sample(f"{name}_bucket", output="segment_changes", le="0.5") == 2.0
    assert m.sample(f"{name}_count", output="churn_risk") == 0.0


def test_emit_latency_uses_wall_clock_by_default() -> None:
    import time

    m = Metrics(CollectorRegistry())
    latency = m.observe_emit_latency("churn_risk", time.time() * 1000 - 2000)
    assert latency is not None
    assert 1.9 < latency < 10


def test_processing_time() -> None:
    m = Metrics(CollectorRegistry())
    m.observe_processing("purchases", 0.002)
    with m.time_processing("purchases"):
        pass
    with pytest.raises(RuntimeError), m.time_processing("purchases"):
        raise RuntimeError("boom")
    assert m.sample("segmenter_processing_seconds_count", topic="purchases") == 3.0
    assert m.sample("segmenter_processing_seconds_bucket", topic="purchases", le="0.0025") == 3.0


def test_processing_times_of_a_batch_land_in_the_same_buckets_as_one_by_one() -> None:
    one_by_one, batched = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    # bucket bounds themselves (le is inclusive), values between, and beyond the last
    times = [0.0, 0.00005, 0.0001, 0.00011, 0.001, 0.0025, 0.05, 1.0, 7.5, 60.0, 0.0001]
    for seconds in times:
        one_by_one.observe_processing("purchases", seconds)
    batched.observe_processing_many("purchases", times)
    expected = generate_latest(one_by_one.registry).decode()
    got = generate_latest(batched.registry).decode()
    lines = [line for line in expected.splitlines() if "segmenter_processing_seconds" in line]
    assert any('le="+Inf"' in line for line in lines)
    assert lines == [line for line in got.splitlines() if "segmenter_processing_seconds" in line]


def test_lag() -> None:
    m = Metrics(CollectorRegistry())
    m.set_lag("purchases", 3, 42)
    assert m.sample("segmenter_consumer_lag", topic="purchases", partition="3") == 42.0
    m.set_lag("purchases", 3, -5)
    assert m.sample("segmenter_consumer_lag", topic="purchases", partition="3") == 0.0
    m.set_consumer_lag({("browsing", 0): 7})
    assert m.sample("segmenter_consumer_lag", topic="purchases", partition="3") is None
    assert m.sample("segmenter_consumer_lag", topic="browsing", partition="0") == 7.0
    m.clear_lag()
    assert m.sample("segmenter_consumer_lag", topic="browsing", partition="0") is None


def test_gauges() -> None:
    m = Metrics(CollectorRegistry())
    m.set_table_keys("customers", 1234)
    m.set_segment_sizes("cluster", {"0": 5, "1": 7, "2": 1})
    m.set_segment_sizes("cluster", {"0": 6, "1": 7})
    m.set_segment_sizes("value", {"high": 2})
    m.set_churn_levels({"high": 3, "low": 10})
    m.model_refreshed(version=4, clusters=2, when=1_700_000_000.0)
    m.set_stream_clock(1_700_000_123_456)
    m.set_ready(True)
    s = m.sample
    assert s("segmenter_table_keys", table="customers") == 1234.0
    assert s("segmenter_segment_size", segment_type="cluster", segment="0") == 6.0
    assert s("segmenter_segment_size", segment_type="cluster", segment="2") is None
    assert s("segmenter_segment_size", segment_type="value", segment="high") == 2.0
    assert s("segmenter_churn_risk_level_customers", level="high") == 3.0
    assert s("segmenter_churn_risk_level_customers", level="medium") == 0.0
    assert s("segmenter_model_version") == 4.0
    assert s("segmenter_model_clusters") == 2.0
    assert s("segmenter_model_last_refresh_timestamp_seconds") == 1_700_000_000.0
    assert s("segmenter_stream_clock_timestamp_seconds") == pytest.approx(1_700_000_123.456)
    assert s("segmenter_worker_ready") == 1.0
    m.set_ready(False)
    assert s("segmenter_worker_ready") == 0.0


def test_model_refreshed_defaults_to_now() -> None:
    import time

    m = Metrics(CollectorRegistry())
    before = time.time()
    m.model_refreshed(1, 3)
    value = m.sample("segmenter_model_last_refresh_timestamp_seconds")
    assert value is not None and before <= value <= time.time()


def test_render_and_content_type() -> None:
    m = Metrics(CollectorRegistry())
    m.processed("feedback")
    body = render(m.registry)
    assert isinstance(body, bytes)
    assert b'segmenter_events_processed_total{topic="feedback"} 1.0' in body
    assert sm.content_type().startswith("text/plain")
    assert sm.CONTENT_TYPE.startswith("text/plain; version=")
    body2, ctype = sm.exposition(m.registry, "application/openmetrics-text; version=1.0.0")
    assert ctype.startswith("application/openmetrics-text")
    assert body2.rstrip().endswith(b"# EOF")
    _, ctype = sm.exposition(m.registry, None)
    assert ctype.startswith("text/plain")


def test_process_metrics_optional() -> None:
    with_proc = exported_names(Metrics(CollectorRegistry()).registry)
    without = exported_names(Metrics(CollectorRegistry(), process_metrics=False).registry)
    assert "python_info" in with_proc
    assert not any(n.startswith(("process_", "python_")) for n in without)


def _touch_everything(m: Metrics) -> None:
    m.set_lag("purchases", 0, 1)
    m.set_segment_sizes("cluster", {"0": 1})
    m.set_churn_levels({"low": 1})
    m.model_refreshed(1, 1, when=1.0)
    m.set_stream_clock(1000)
    m.set_table_keys("customers", 1)
    m.observe_emit_latency("segment_changes", 1, now=1.0)
    m.offset_gap("purchases", 1)
    m.requeued("purchases")
    m.set_events_held(3, 1)
    m.sweep_chunk({"evaluated": 1, "skipped": 2}, 0.01)
    from models.kpis import Totals

    m.set_segment_kpis(
        Totals(
            seg={"value.high": [1, 1, 0, 0, 0, 0, 0, 0, 9.0, 90.0, 1]},
            xp={"winback": {"holdout": [1, 1, 0, 0, 0.0, 0.0, 0]}},
        ),
        today=0,
    )


def test_reject_reasons_cover_the_brief() -> None:
    assert {
        "not_utf8",
        "invalid_json",
        "not_an_object",
        "too_large",
        "schema",
        "bad_ts",
        "late",
        "processing_error",
        "unknown_topic",
        "key_mismatch",
        "erased",
        "opted_out",
        "other",
    } <= REJECT_REASONS


def test_reason_codes_used_in_the_code_are_known() -> None:
    """Every literal reason in ``InvalidEvent("…")`` / ``rejected(topic, "…")`` is in the set,
    so no rejection silently ends up as ``other``."""
    from .conftest import ROOT

    pattern = re.compile(r'(?:InvalidEvent\(\s*|\.rejected\(\s*\w+\s*,\s*)"([a-z_]+)"')
    found: set[str] = set()
    for package in ("schemas", "streams", "models"):
        for path in (ROOT / package).glob("*.py"):
            found |= set(pattern.findall(path.read_text()))
    assert found <= REJECT_REASONS, sorted(found - REJECT_REASONS)
