"""Experiments: configuration, deterministic arms, outcome windows, intervals."""

from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from models.eventtime import MS_PER_DAY
from models.experiments import (
    Experiment,
    ExperimentsConfigError,
    arm_of,
    close_due,
    enter,
    experiment_report,
    known_segments,
    load_segments_config,
    mean_difference,
    observe_event,
    parse_experiments,
    proportion_difference,
)
from models.rules import RulesConfig, RulesConfigError, parse_rules

DAY = MS_PER_DAY
KNOWN = known_segments(RulesConfig())


def test_arm_is_the_published_keyed_hash() -> None:
    """Anyone can reproduce an arm from the recipe in docs/segments.md."""
    for i in range(200):
        customer = f"customer-{i}"
        digest = hashlib.blake2b(customer.encode(), key=b"winback", digest_size=8).digest()
        u = int.from_bytes(digest, "big") / 2**64
        assert arm_of("winback", customer, 0.3) == ("holdout" if u < 0.3 else "treatment")


def test_holdout_share_within_sampling_error() -> None:
    n, share = 50_000, 0.2
    held = sum(arm_of("spring", f"c{i:06d}", share) == "holdout" for i in range(n))
    assert abs(held / n - share) < 3 * math.sqrt(share * (1 - share) / n)


def test_arms_differ_between_experiments_and_grow_monotonically() -> None:
    ids = [f"c{i}" for i in range(5000)]
    a = [arm_of("one", c, 0.5) for c in ids]
    b = [arm_of("two", c, 0.5) for c in ids]
    agree = sum(x == y for x, y in zip(a, b, strict=True)) / len(ids)
    assert 0.45 < agree < 0.55  # independent draws, not the same split
    small = {c for c in ids if arm_of("one", c, 0.1) == "holdout"}
    large = {c for c in ids if arm_of("one", c, 0.3) == "holdout"}
    assert small < large  # raising the holdout only moves treatment customers into it


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"name": "x", "segment": "lifecycle.at_risk"}, "holdout must be a share"),
        ({"name": "x", "segment": "lifecycle.at_risk", "holdout": 1}, "strictly between"),
        ({"name": "x", "segment": "lifecycle.at_risk", "holdout": True}, "holdout"),
        ({"name": "x", "segment": "lifecycle", "holdout": 0.2}, "segment_type.id"),
        ({"name": "x", "segment": "lifecyle.at_risk", "holdout": 0.2}, "unknown segment type"),
        ({"name": "x", "segment": "churn.severe", "holdout": 0.2}, "churn has high, low, medium"),
        ({"name": "x", "segment": "nps.promoter", "holdout": 0.2, "window": 3}, "unknown key"),
        (
            {"name": "x", "segment": "nps.promoter", "holdout": 0.2, "window_days": 0},
            "window_days",
        ),
        ({"name": "not valid", "segment": "nps.promoter", "holdout": 0.2}, "identifier"),
        ("winback", "expected a mapping"),
    ],
)
def test_bad_experiments_are_named(item: object, message: str) -> None:
    with pytest.raises(ExperimentsConfigError, match=message) as caught:
        parse_experiments([item], "segments.yaml", KNOWN)
    assert str(caught.value).startswith("segments.yaml: experiment")
    assert isinstance(caught.value, RulesConfigError)  # one-line CLI error (cli_errors)


def test_names_are_unique_and_user_rules_and_clusters_are_known() -> None:
    config = parse_rules(
        [{"name": "vip", "cases": [{"id": "big", "when": "revenue_90d > 1000"}], "default": "rest"}]
    )
    known = known_segments(config)
    items = [
        {"name": "a", "segment": "vip.big", "holdout": 0.1},
        {"name": "b", "segment": "vip.rest", "holdout": 0.1},
        {"name": "c", "segment": "cluster.3", "holdout": 0.1, "window_days": 7},
    ]
    parsed = parse_experiments(items, "f.yaml", known)
    assert [e.segment_key for e in parsed] == ["vip.big", "vip.rest", "cluster.3"]
    with pytest.raises(ExperimentsConfigError, match="name used twice"):
        parse_experiments([items[0], items[0]], "f.yaml", known)


def test_segments_file_with_experiments(tmp_path: Path) -> None:
    path = tmp_path / "segments.yaml"
    path.write_text(
        "settings: {lapsed_days: 90}\n"
        "segments: []\n"
        "experiments:\n"
        "  - {name: winback, segment: lifecycle.at_risk, holdout: 0.2, window_days: 21}\n"
    )
    config, experiments = load_segments_config(path)
    assert config.lapsed_days == 90
    assert experiments == (Experiment("winback", "lifecycle", "at_risk", 0.2, 21),)
    path.write_text("experiments: {name: x}\n")
    with pytest.raises(ExperimentsConfigError, match="must be a list"):
        load_segments_config(path)


def test_outcome_window_counts_events_inside_it_only() -> None:
    e = Experiment("w", "lifecycle", "at_risk", holdout=0.5, window_days=3)
    windows: dict = {}
    tallies: dict = {}
    entry = 10 * DAY + 5 * 3_600_000  # day 10, 05:00
    arm = enter(e, "c1", entry, windows, tallies)
    assert tallies["w"][:2] == [("treatment", "holdout").index(arm), 1]
    # The window is [entry, start of day 13).
    observe_event(windows, "purchases", {"ts": entry - 1, "amount": 99.0})  # before entry
    observe_event(windows, "profiles", {"ts": entry + 1})  # not behaviour
    assert windows["w"][3:] == [0, 0, 0.0]
    observe_event(windows, "browsing", {"ts": 11 * DAY})
    observe_event(windows, "purchases", {"ts": 12 * DAY, "amount": 30.0})
    observe_event(windows, "purchases", {"ts": 13 * DAY, "amount": 50.0})  # after the end
    assert windows["w"][3:] == [1, 1, 30.0]
    # Entering again while the window is open is not a new exposure.
    enter(e, "c1", 12 * DAY, windows, tallies)
    assert tallies["w"][1] == 1
    # Not closed before the end; closed at the start of day 13.
    assert not close_due(windows, tallies, 13 * DAY - 1, False, {"w"})
    before = tallies["w"]
    assert close_due(windows, tallies, 13 * DAY, True, {"w"})
    assert tallies["w"] is not before  # replaced: callers keep the old one for the delta
    assert tallies["w"][1:] == [1, 1, 1, 1, 30.0, 900.0, 1]
    assert windows == {}
    # A new entry after the close is a new exposure, in the same arm.
    assert enter(e, "c1", 20 * DAY, windows, tallies) == arm
    assert tallies["w"][1:3] == [2, 1]


def test_windows_of_removed_experiments_are_dropped() -> None:
    windows = {"gone": [0, DAY, 0, 1, 1, 5.0]}
    tallies: dict = {}
    assert not close_due(windows, tallies, DAY, False, {"other"})
    assert windows == {} and tallies == {}


def test_difference_intervals_match_scipy() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.gamma(2.0, 30.0, 40), rng.gamma(2.0, 20.0, 55)
    found = mean_difference(a.sum(), (a * a).sum(), 40, b.sum(), (b * b).sum(), 55)
    assert found is not None
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval()
    assert found[0] == pytest.approx(a.mean() - b.mean())
    assert found[1:] == pytest.approx((ci.low, ci.high))
    assert mean_difference(5.0, 25.0, 1, 3.0, 5.0, 3) is None
    assert proportion_difference(1, 0, 1, 3) is None


def test_intervals_cover_the_true_effect_95_percent_of_the_time() -> None:
    """600 simulated experiments with a known effect: each interval covers it ~95 %."""
    rng = random.Random(7)
    runs, covered_share, covered_mean = 600, 0, 0
    for _ in range(runs):
        n1, n0 = 400, 100
        x1 = sum(rng.random() < 0.30 for _ in range(n1))
        x0 = sum(rng.random() < 0.20 for _ in range(n0))
        found = proportion_difference(x1, n1, x0, n0)
        assert found is not None
        covered_share += found[1] <= 0.10 <= found[2]
        r1 = [rng.expovariate(1 / 60.0) for _ in range(n1)]
        r0 = [rng.expovariate(1 / 45.0) for _ in range(n0)]
        mean = mean_difference(
            sum(r1), sum(v * v for v in r1), n1, sum(r0), sum(v * v for v in r0), n0
        )
        assert mean is not None
        covered_mean += mean[1] <= 15.0 <= mean[2]
    for covered in (covered_share, covered_mean):
        assert 0.925 <= covered / runs <= 0.975, covered / runs


def test_report_has_every_arm_and_outcome_even_when_empty() -> None:
    e = Experiment("w", "churn", "high", holdout=0.2)
    report = experiment_report(e, {})
    assert report["arms"]["holdout"]["customers"] == 0
    assert report["arms"]["treatment"]["outcomes"]["active_share"] is None
    assert report["uplift"]["revenue_per_customer"] == {
        "estimate": None,
        "ci95": None,
        "significant": None,
    }
    assert report["holdout_share_observed"] is None


def test_the_example_file_has_valid_experiments() -> None:
    root = Path(__file__).resolve().parents[2]
    _, experiments = load_segments_config(root / "segments.example.yaml")
    assert [e.segment_key for e in experiments] == [
        "lifecycle.at_risk",
        "vip_promoters.vip_detractor",
    ]
