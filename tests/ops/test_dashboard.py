"""Grafana dashboard, Prometheus config and alert rules use only metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.worker.metrics import METRIC_NAMES, Metrics, exported_names

from .conftest import ROOT, metric_names_in

DASHBOARD = ROOT / "deploy/grafana/dashboards/segmenter.json"
PROMETHEUS = ROOT / "deploy/prometheus/prometheus.yml"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"


@pytest.fixture(scope="module")
def exported() -> frozenset[str]:
    """Sample names a freshly built Metrics exposes (segmenter_* ones)."""
    names = exported_names(Metrics(CollectorRegistry()).registry)
    return frozenset(n for n in names if n.startswith("segmenter_"))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    exprs = [
        (panel.get("title", "?"), target["expr"])
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") == "query" and query:
            exprs.append((f"${var['name']}", query))
    return exprs


def test_metric_names_constant_matches_registry(exported: frozenset[str]) -> None:
    assert exported == METRIC_NAMES


def test_dashboard_is_provisionable(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] == "Segmenter"
    assert dashboard["uid"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]


def test_dashboard_panels_cover_the_brief(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(e for _, e in _dashboard_exprs(dashboard))
    for needle in (
        "rate(segmenter_events_processed_total",
        "segmenter_events_rejected_total",
        "segmenter_dead_letters_total",
        "segmenter_consumer_lag",
        "histogram_quantile(0.99, sum by (le, output) (rate("
        "segmenter_event_to_emit_latency_seconds_bucket",
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "segmenter_processing_seconds_bucket",
        "segmenter_segment_size",
        "segmenter_segment_transitions_total",
        "segmenter_segment_flaps_total",
        "segmenter_churn_risk_level_customers",
        "segmenter_model_version",
        "time() - max(segmenter_model_last_refresh_timestamp_seconds",
        "segmenter_table_keys",
    ):
        assert needle in exprs, needle


def test_dashboard_uses_only_exported_metrics(
    dashboard: dict[str, Any], exported: frozenset[str]
) -> None:
    exprs = _dashboard_exprs(dashboard)
    assert len(exprs) >= 20
    used: set[str] = set()
    for title, expr in exprs:
        names = metric_names_in(expr)
        assert names, f"{title}: {expr} uses no segmenter metric"
        assert names <= exported, f"{title}: unknown {sorted(names - exported)}"
        used |= names
    # a histogram is only useful through its buckets / count / sum
    assert not {n for n in used if n.endswith("_seconds") and f"{n}_bucket" in exported}


def _balanced(expr: str) -> bool:
    depth = {"(": 0, "[": 0, "{": 0}
    pairs = {")": "(", "]": "[", "}": "{"}
    for ch in re.sub(r'"[^"]*"', "", expr):
        if ch in depth:
            depth[ch] += 1
        elif ch in pairs:
            depth[pairs[ch]] -= 1
            if depth[pairs[ch]] < 0:
                return False
    return all(v == 0 for v in depth.values())


def test_dashboard_expressions_balanced(dashboard: dict[str, Any]) -> None:
    for title, expr in _dashboard_exprs(dashboard):
        assert _balanced(expr), f"{title}: {expr}"


# ---------------------------------------------------------------- prometheus
@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_alert_rules_syntax(rules: list[dict[str, Any]]) -> None:
    data = yaml.safe_load(ALERTS.read_text())
    assert set(data) == {"groups"}
    for group in data["groups"]:
        assert group["name"] and group["rules"]
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
        assert isinstance(rule["expr"], str) and _balanced(rule["expr"]), rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"(\d+[smhdwy])+", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]


def test_alert_rules_cover_the_brief(rules: list[dict[str, Any]]) -> None:
    by_expr = " ".join(r["expr"] for r in rules)
    assert "segmenter_consumer_lag" in by_expr and "deriv(segmenter_consumer_lag" in by_expr
    assert "rate(segmenter_dead_letters_total" in by_expr
    assert "histogram_quantile(0.99" in by_expr and ") > 1" in by_expr
    assert "segmenter_worker_ready == 0" in by_expr
    assert (
        "segmenter_stream_clock_timestamp_seconds - segmenter_model_as_of_timestamp_seconds"
        in by_expr
    )
    assert "increase(segmenter_events_processed_total[10m])) == 0" in by_expr


def test_alert_rules_use_only_exported_metrics(
    rules: list[dict[str, Any]], exported: frozenset[str]
) -> None:
    for rule in rules:
        names = metric_names_in(rule["expr"])
        assert names <= exported, f"{rule['alert']}: unknown {sorted(names - exported)}"


def test_prometheus_scrapes_the_compose_workers() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "/etc/prometheus/alerts.yml" in config["rule_files"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "segmenter"]
    assert job["scrape_interval"] == "5s"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    workers = {name for name in compose["services"] if name.startswith("worker-")}
    assert len(workers) >= 2
    expected = set()
    for name in workers:
        env = compose["services"][name]["environment"]
        expected.add(f"{name}:{env['SEGMENTER_WEB_PORT']}")
    assert targets == expected
    # the alert rules reference the scrape job by name
    assert 'job="segmenter"' in ALERTS.read_text()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_check(tmp_path: Path) -> None:
    # prometheus.yml names the rule file by its in-container path; check a copy
    config = yaml.safe_load(PROMETHEUS.read_text())
    config["rule_files"] = [str(ALERTS)]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    # the dashboard's PromQL, Grafana variables substituted, as recording rules
    exprs = _dashboard_exprs(json.loads(DASHBOARD.read_text()))
    substitutions = {"$__rate_interval": "1m", "$instance": ".*", "$segment_type": "cluster"}
    recorded = []
    for i, (_, expr) in enumerate(exprs):
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        if not expr.startswith("label_values("):
            recorded.append({"record": f"segmenter:dashboard_{i}", "expr": expr})
    panels = tmp_path / "dashboard_rules.yml"
    panels.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    checks = (
        ["check", "config", str(copy)],
        ["check", "rules", str(ALERTS)],
        ["check", "rules", str(panels)],
    )
    for args in checks:
        result = subprocess.run(["promtool", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
