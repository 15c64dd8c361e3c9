"""``segmenter evaluate``: replaying histories through the churn logic and measuring it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from models.eventtime import MS_PER_DAY
from streams.ops.cli import cli
from streams.tools.evaluation import (
    EvaluationReport,
    evaluate_history,
    evaluate_simulation,
    replay,
)
from streams.tools.simulator import Simulation

# 700 customers x 120 days (~0.45 M events): ~15 s of CPU on one core.
SIM_CUSTOMERS, SIM_DAYS, SIM_SEED = 700, 120, 7


@pytest.fixture(scope="module")
def sim_report() -> EvaluationReport:
    return evaluate_simulation(Simulation(customers=SIM_CUSTOMERS, days=SIM_DAYS, seed=SIM_SEED))


def test_scorer_beats_recency_on_simulated_churn(sim_report: EvaluationReport) -> None:
    r = sim_report
    # Same run, same population, same labels: only the score differs.
    assert r.score.auc >= 0.7
    assert r.score.auc > r.baseline.auc
    assert r.score.precision_at_decile > r.base_rate
    # Among customers still active in the last 14 days -- the ones outreach can
    # still reach -- the gap is the point of the model.
    assert r.recent_score is not None and r.recent_baseline is not None
    assert r.recent_score.auc > r.recent_baseline.auc


def test_report_counts_are_consistent(sim_report: EvaluationReport) -> None:
    r = sim_report
    assert r.n_customers == r.n_churners + r.n_non_churners
    assert 0 < r.n_churners < r.n_customers
    assert r.base_rate == pytest.approx(r.n_churners / r.n_customers, abs=1e-4)
    assert r.decile_size == math.ceil(r.n_customers / 10)
    assert r.score.lift == pytest.approx(r.score.precision_at_decile / r.base_rate, rel=1e-2)
    assert r.recent_n_customers <= r.n_customers
    assert r.churners_flagged <= r.n_churners
    assert r.flagged_within_30d_of <= r.flagged_within_14d_of <= r.n_churners
    assert 0 <= r.false_alarms <= r.n_non_churners
    assert r.false_alarm_rate == pytest.approx(r.false_alarms / r.n_non_churners, abs=1e-4)
    assert r.churn_events == sum(r.churn_events_by_level.values())
    assert r.n_events > 0 and r.n_scored > 0
    assert r.cutoff == "2026-04-01"  # day 90 = days - horizon


@pytest.fixture(scope="module")
def sim_prior_report() -> EvaluationReport:
    """The same simulation scored with the prior (hand-set) weights only."""
    return evaluate_simulation(
        Simulation(customers=SIM_CUSTOMERS, days=SIM_DAYS, seed=SIM_SEED),
        learning=False,
        batch_baselines=False,
    )


def test_lead_time_exists_for_most_churners(
    sim_report: EvaluationReport, sim_prior_report: EvaluationReport
) -> None:
    for r in (sim_report, sim_prior_report):
        assert r.churners_flagged >= 0.8 * r.n_churners
        assert r.lead_days_median is not None and r.lead_days_p25 is not None
        assert r.lead_days_p25 <= r.lead_days_median <= (r.lead_days_p75 or 0.0)
    # The hand-set score flags 80 % of churners within 30 days of going silent.
    prior = sim_prior_report
    assert prior.flagged_within_30d is not None and prior.flagged_within_30d >= 0.8
    # 120 simulated days: no outcome matures after the 90-day warm-up, so the
    # streaming model is still the prior, and says so (the learned model's
    # acceptance is in test_churn_real_data.py).
    assert sim_report.model["learned"] is False
    assert any("still the prior" in note for note in sim_report.notes)
    # the hand-set score's own level track, computed on the same scorings
    hand_set = sim_report.level_tradeoffs["hand-set score"]
    assert hand_set.churners_flagged == sim_report.churners_flagged
    assert hand_set.lead_days_median == sim_report.lead_days_median


def _learning_replay(levels: bool, **options: Any) -> Any:
    """A small simulation whose model learns (short horizon, no warm-up)."""
    from models.churn_outcomes import ChurnTracking

    sim = Simulation(customers=260, days=80, seed=4)
    return replay(
        sim.events(),
        sim.start_ms + 65 * MS_PER_DAY,
        extra_cutoffs=[sim.start_ms + 45 * MS_PER_DAY],
        tracking=ChurnTracking(horizon_days=8, label="activity", offset_days=8),
        warmup_days=0,
        levels=levels,
        **options,
    )


def test_skipping_silent_customers_between_their_due_days_keeps_model_and_scores() -> None:
    """--no-levels: the learner sees the same outcomes in the same order, so the
    published models and every cut-off score are exactly those of the full sweep."""
    full = _learning_replay(True)
    quick = _learning_replay(False)
    assert full.cutoff_model["learned"] is True and full.publications[-1][3] > 2000
    assert quick.publications == full.publications
    for cutoff in full.cutoff_states:
        assert quick.at(cutoff).cutoff_model == full.at(cutoff).cutoff_model
        assert quick.at(cutoff).cutoff_scores == full.at(cutoff).cutoff_scores
    assert quick.n_scored < 0.8 * full.n_scored  # silent customers skipped between due days
    assert quick.levels is False and quick.shadow_events == {}


def test_the_hand_set_track_is_what_the_prior_weights_would_have_sent() -> None:
    """The hand-set score's levels, computed on the streaming model's scorings, equal the
    churn-risk events of a run whose weights stay the prior (the same BTYD refits)."""
    from streams.tools.evaluation import HAND_SET
    from streams.worker.churn_learner import ChurnLearnerHost

    learner = ChurnLearnerHost(horizon_days=8, label="activity", offset_days=8,
                               min_labels=10**9, warmup_days=0)  # fmt: skip
    prior = _learning_replay(True, learner=learner)
    assert prior.cutoff_model["learned"] is False and prior.publications

    def moves(events: list[Any]) -> list[tuple[str, int, str, str | None]]:
        return [(e.customer_id, e.ts, e.level, e.previous_level) for e in events]

    assert moves(prior.shadow_events[HAND_SET]) == moves(prior.churn_events)
    hand_set = prior.shadow_events[HAND_SET]
    scores = [(a.score, b.score) for a, b in zip(hand_set, prior.churn_events, strict=True)]
    assert all(a == pytest.approx(b, abs=1e-12) for a, b in scores)
    learned = _learning_replay(True)
    assert moves(learned.shadow_events[HAND_SET]) == moves(prior.churn_events)
    assert moves(learned.churn_events) != moves(prior.churn_events)


def test_fast_replay_agrees_with_the_worker_code_path() -> None:
    """The fast mode and CustomerProcessor + daily sweep flag the same customers."""
    sim = Simulation(customers=60, days=40, seed=11)
    cutoff = sim.start_ms + 30 * MS_PER_DAY
    fast = replay(sim.events(), cutoff, mode="fast")
    exact = replay(sim.events(), cutoff, mode="exact")
    # Scores at the cut-off come from identical feature states.
    assert fast.cutoff_scores == exact.cutoff_scores
    assert fast.n_events == exact.n_events

    def final_levels(result: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        for ev in result.churn_events:
            out[ev.customer_id] = ev.level
        return out

    def high_days(result: Any) -> set[tuple[str, int]]:
        return {
            (ev.customer_id, ev.ts // MS_PER_DAY)
            for ev in result.churn_events
            if ev.level == "high"
        }

    f_levels, e_levels = final_levels(fast), final_levels(exact)
    agree = sum(f_levels.get(c) == e_levels.get(c) for c in set(f_levels) | set(e_levels))
    assert agree >= 0.9 * len(set(f_levels) | set(e_levels))
    f_high, e_high = high_days(fast), high_days(exact)
    assert len(f_high & e_high) >= 0.8 * max(len(f_high), len(e_high))


# --------------------------------------------------------------------------- JSON Lines
DAY0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z


def _purchase(cid: str, day: int, n: int) -> dict[str, Any]:
    return {
        "event_id": f"pu-{cid}-{day}-{n}",
        "customer_id": cid,
        "ts": DAY0 + day * MS_PER_DAY + 12 * 3_600_000,
        "order_id": f"o-{cid}-{day}",
        "amount": 20.0,
        "items": 1,
        "category": "books",
        "channel": "web",
    }


def _browse(cid: str, day: int) -> dict[str, Any]:
    return {
        "event_id": f"br-{cid}-{day}",
        "customer_id": cid,
        # RFC 3339 with an offset: normalised by validation, as in the worker.
        "ts": "2025-01-01T10:00:00+01:00" if day == 0 else DAY0 + day * MS_PER_DAY + 9_000_000,
        "session_id": f"s-{cid}-{day}",
        "action": "product_view",
    }


@pytest.fixture
def history(tmp_path: Path) -> list[Path]:
    """Four customers over 100 days, one file per topic plus one mixed file."""
    # a: daily buyer who stops after day 59; d: stops after day 20 (both churn).
    # b: daily buyer to the end; c: every other day to the end (both stay).
    spans = {"a": range(0, 60), "b": range(0, 100), "c": range(0, 100, 2), "d": range(0, 21)}
    purchases = tmp_path / "purchases.jsonl"
    mixed = tmp_path / "events.jsonl"
    with purchases.open("wb") as fp, mixed.open("wb") as fm:
        for cid, days in spans.items():
            for day in days:
                fp.write(orjson.dumps(_purchase(cid, day, 0)) + b"\n")
                fm.write(orjson.dumps({"topic": "browsing", **_browse(cid, day)}) + b"\n")
        fp.write(orjson.dumps(_purchase("b", 3, 0)) + b"\n")  # a re-sent event: duplicate
        fp.write(b'{"event_id": "x", "customer_id": "b", "ts": 1}\n')  # fails the schema
        fm.write(b"not json\n")
    return [purchases, mixed]


def test_history_with_cutoff(history: list[Path]) -> None:
    r = evaluate_history(history, "2025-03-03", horizon_days=30)  # cut-off = day 61
    assert r.cutoff == "2025-03-03"
    assert (r.n_customers, r.n_churners, r.n_non_churners) == (4, 2, 2)
    assert r.base_rate == 0.5
    # At the cut-off a and d are silent, b and c active: both rankings are perfect.
    assert r.score.auc == 1.0 and r.baseline.auc == 1.0
    assert sum(r.n_rejected.values()) == 3  # duplicate, schema, invalid JSON
    # Nobody sends an event after their last purchase: the sweep alone flags
    # them high, days after they went silent.
    assert r.churners_flagged == 2
    assert r.lead_days_p25 is not None and r.lead_days_p25 > 0
    assert r.lead_days_p75 is not None and r.lead_days_p75 <= 30
    assert r.flagged_within_30d == 1.0 and r.flagged_within_30d_of == 2
    assert r.false_alarms == 0 and r.false_alarm_rate == 0.0


def test_history_exact_mode_gives_the_same_report(history: list[Path]) -> None:
    fast = evaluate_history(history, "2025-03-03").to_dict()
    exact = evaluate_history(history, "2025-03-03", mode="exact").to_dict()
    for key in ("score", "baseline", "n_churners", "churners_flagged", "lead_days_median"):
        assert fast[key] == exact[key], key


def test_history_needs_both_classes(history: list[Path]) -> None:
    with pytest.raises(ValueError, match="churners and non-churners"):
        evaluate_history(history, "2025-01-15", horizon_days=3)


def test_cli_evaluate_history_json(history: list[Path]) -> None:
    args = ["evaluate", "--cutoff", "2025-03-03", "--json"]
    for path in history:
        args += ["--history", str(path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.output)
    assert report["n_customers"] == 4 and report["score"]["auc"] == 1.0


def test_cli_evaluate_simulation_table() -> None:
    result = CliRunner().invoke(cli, ["evaluate", "--customers", "80", "--days", "50"])
    assert result.exit_code == 0, result.output
    assert "streaming churn" in result.output and "recency only" in result.output


def test_cli_evaluate_without_levels_and_bad_thresholds(history: list[Path]) -> None:
    args = ["evaluate", "--cutoff", "2025-03-03", "--history", str(history[0])]
    result = CliRunner().invoke(cli, [*args, "--no-levels", "--json"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.output)
    assert report["levels"] is False and report["level_tradeoffs"] == {}
    assert "hand-set score" in report["comparisons"]
    result = CliRunner().invoke(cli, [*args, "--medium", "0.8", "--high", "0.7"])
    assert result.exit_code == 2 and "medium < high" in result.output


def test_cli_history_without_cutoff(history: list[Path]) -> None:
    result = CliRunner().invoke(cli, ["evaluate", "--history", str(history[0])])
    assert result.exit_code == 2


# --------------------------------------------------------------------------- transaction logs
def test_a_plain_transaction_log_is_read_as_purchases(tmp_path: Path) -> None:
    """CSV of customer_id, date, amount (what any order system can export)."""
    log = tmp_path / "orders.csv"
    rows = ["customer_id,date,amount"]
    for cid, days in {"a": range(0, 60, 3), "b": range(0, 100, 3), "c": range(0, 100, 5)}.items():
        rows += [f"{cid},{(DAY0 + d * MS_PER_DAY) // 1000}000,{10 + d % 7}" for d in days]
    rows += ["d,2025-01-05,12.5", "d,20250110,7", "e,not a date,3", "f,2025-01-02,-1"]
    log.write_text("\n".join(rows) + "\n")
    from streams.tools.histories import read_history

    events, rejected = read_history([log])
    assert rejected == {"bad_ts": 1, "schema": 1}
    assert {e["customer_id"] for _, e in events} == {"a", "b", "c", "d"}
    assert all(t == "purchases" and e["order_id"] == e["event_id"] for t, e in events)
    r = evaluate_history([log], "2025-03-03", horizon_days=30, active_days=0, learning=False)
    assert (r.n_customers, r.n_churners) == (4, 2)  # a and d churn, b and c buy on
    assert r.label == "purchase"


def test_cli_dataset_needs_the_package_or_names_it() -> None:
    result = CliRunner().invoke(
        cli, ["evaluate", "--dataset", "no-such-set", "--cutoff", "1997-10-01"]
    )
    assert result.exit_code == 2 and "unknown data set" in result.output
