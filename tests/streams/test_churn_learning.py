"""The worker's churn learning: snapshots in the record, delayed labels, one learner."""

from __future__ import annotations

import orjson
import pytest

from models.btyd_summary import BTYDSummary
from models.churn_model import FEATURES, ChurnModel
from models.churn_outcomes import ChurnTracking
from models.eventtime import MS_PER_DAY
from models.processing import CustomerProcessor, btyd_row, churn_training_items
from models.rules import RuleEngine, RulesConfig
from streams.settings import Settings
from streams.worker.app import build_runtime
from streams.worker.churn_learner import ChurnLearnerHost
from streams.worker.churn_runner import ChurnLearnerRunner, base_summary
from streams.worker.sweep import PartitionSweep

DAY0 = 20_000  # a UTC day number


def purchase(cid: str, day: int, n: int = 0) -> dict[str, object]:
    return {
        "event_id": f"{cid}-p{day}-{n}",
        "customer_id": cid,
        "ts": day * MS_PER_DAY + 3_600_000,
        "order_id": f"{cid}-o{day}-{n}",
        "amount": 20.0,
        "items": 1,
    }


def processor(horizon: int = 30, label: str = "purchase") -> CustomerProcessor:
    from models.churn import ChurnScorer

    return CustomerProcessor(
        rules=RuleEngine(RulesConfig()),
        scorer=ChurnScorer(),
        tracking=ChurnTracking(horizon_days=horizon, label=label, snapshot_every=5),
    )


def run_days(
    proc: CustomerProcessor, cid: str, buy_days: set[int], days: int, model: object = None
) -> tuple[dict[str, object], list[list[object]], int]:
    """Customer history through handle() and the daily sweep (review); labels and writes."""
    state = None
    labels: list[list[object]] = []
    writes = 0
    for day in range(DAY0, DAY0 + days):
        if state is not None:
            result = proc.review(cid, state, day, None, model)
            labels += result.churn_labels
            writes += int(result.write)
        if day in buy_days:
            result = proc.handle(cid, state, "purchases", purchase(cid, day), None, model)
            state = result.state
            labels += result.churn_labels
    assert state is not None
    return state, labels, writes


def test_snapshots_live_in_the_record_and_mature_into_honest_labels() -> None:
    proc = processor(horizon=30)
    buys = {DAY0, DAY0 + 3, DAY0 + 40}
    state, labels, writes = run_days(proc, "c1", buys, 120)
    # a snapshot of day d is labelled churned iff no purchase in [d, d + 30)
    assert labels, "outcomes must mature"
    for vector, churned, day in labels:
        bought = any(day <= b < day + 30 for b in buys)
        assert churned == (0 if bought else 1), day
        assert len(vector) == len(FEATURES)
    assert {c for _, c, _ in labels} == {0, 1}
    # matured snapshots leave the record; at most H / every + 1 wait
    pending = state["churn"]["snap"]
    assert all(day > DAY0 + 120 - 1 - 30 for day, _, _ in pending)
    assert len(pending) <= 30 // 5 + 1
    # a sweep that takes or releases a snapshot writes the record (else it would be lost)
    assert writes >= len(labels)
    # the record survives JSON (the table's encoding) unchanged
    assert orjson.loads(orjson.dumps(state)) == state
    assert btyd_row(state) == [2, 40, DAY0]
    assert [item["churn"] for item in churn_training_items(_result(labels))] == labels


def _result(labels: list[list[object]]) -> object:
    from models.processing import Result

    result = Result("new", None)
    result.churn_labels = labels
    return result


def test_activity_label_counts_browsing() -> None:
    proc = processor(horizon=30, label="activity")
    state, _, _ = run_days(proc, "c2", {DAY0}, 3)
    browse = {
        "event_id": "b1",
        "customer_id": "c2",
        "ts": (DAY0 + 20) * MS_PER_DAY,
        "session_id": "s1",
        "action": "page_view",
    }
    for day in range(DAY0 + 3, DAY0 + 20):
        proc.review("c2", state, day, None, None)
    proc.handle("c2", state, "browsing", browse, None, None)
    labels = []
    for day in range(DAY0 + 20, DAY0 + 60):
        labels += proc.review("c2", state, day, None, None).churn_labels
    assert any(churned == 0 for _, churned, day in labels if day <= DAY0 + 20)


def test_the_installed_model_scores_and_names_itself_in_churn_events() -> None:
    rt = build_runtime(Settings(churn_horizon_days=30))
    host = ChurnLearnerHost(horizon_days=30, min_labels=1, warmup_days=0)
    host.learn([{"churn": [[0.0] * 5 + [0.9, 1.0, 0.0], 1, DAY0]}] * 3)
    model = host.publish()
    message = orjson.loads(orjson.dumps(host.message(model)))  # what the topic carries
    rt.install_model(message)
    assert isinstance(rt.churn_params, ChurnModel)
    assert rt.churn_params.to_dict() == model.to_dict()
    assert rt.metrics.sample("segmenter_churn_model_revision") == 1.0
    assert rt.metrics.sample("segmenter_churn_model_learned") == 1.0
    assert rt.model_message is None  # the cluster snapshot is untouched
    # churn-risk events carry the installed model's version
    state, events = None, []
    for day in range(DAY0, DAY0 + 90):
        if state is not None:
            events += rt.processor.review("c3", state, day, None, rt.churn_params).churn_events
        if day == DAY0:
            result = rt.processor.handle(
                "c3", None, "purchases", purchase("c3", day), None, rt.churn_params
            )
            state, events = result.state, events + result.churn_events
    assert events and all(e["model_version"] == "churn-r1+btyd-default" for e in events)


def test_a_model_for_another_question_is_not_used() -> None:
    rt = build_runtime(Settings(churn_horizon_days=90))
    host = ChurnLearnerHost(horizon_days=30)
    rt.install_model(host.message(host.publish()))
    assert rt.churn_params is None  # keeps the prior
    restored = ChurnLearnerHost.restore(host.message(host.model()), horizon_days=90)
    assert restored.revision == 0  # not resumed: another horizon


def test_learner_resumes_from_its_published_message() -> None:
    host = ChurnLearnerHost(horizon_days=30, min_labels=2, refit_days=7, warmup_days=0)
    host.learn([{"churn": [[0.1] * 8, 1, DAY0]}, {"churn": [[0.0] * 8, 0, DAY0]}])
    model = host.publish()
    message = orjson.loads(orjson.dumps(host.message(model)))
    again = ChurnLearnerHost.restore(message, horizon_days=30, min_labels=2, warmup_days=0)
    assert again.revision == host.revision
    assert again.learner is not None and host.learner is not None
    assert again.learner.weights == host.learner.weights
    assert again.learner.n_labels == 2
    assert again.model().to_dict()["weights"] == model.to_dict()["weights"]


def test_refits_follow_stream_time_on_the_partitions_tables() -> None:
    rt = build_runtime(Settings(churn_horizon_days=30, churn_refit_days=7))
    proc = processor()
    sweeps = [PartitionSweep(), PartitionSweep()]
    for i in range(600):
        cid = f"c{i}"
        buys = {DAY0 + i % 50, DAY0 + i % 50 + (i % 7) * 3} if i % 3 else {DAY0 + i % 50}
        state, _, _ = run_days(proc, cid, buys, 60)
        sweeps[i % 2].count(state)
    for p, sweep in enumerate(sweeps):
        rt.remote_stats[f"p{p}"] = {"btyd": sweep.btyd.to_dict()}
    total = base_summary(rt)
    assert total.n_customers == 600
    assert len(total) < 600
    owner = True
    runner = ChurnLearnerRunner(rt, lambda: owner)
    rt.clock.observe((DAY0 + 60) * MS_PER_DAY)
    first = runner.step()
    assert first is not None and first["model"]["btyd"]["day"] == DAY0 + 60
    assert first["model"]["btyd"]["n_customers"] == 600
    assert first["model"]["btyd"]["pareto"] is not None
    assert runner.step() is None  # nothing new: no refit due, no outcomes
    rt.clock.observe((DAY0 + 66) * MS_PER_DAY)
    assert runner.step() is None  # 6 days later: not yet
    rt.clock.observe((DAY0 + 67) * MS_PER_DAY)
    second = runner.step()
    assert second is not None and second["model"]["revision"] == 2
    owner = False
    rt.clock.observe((DAY0 + 80) * MS_PER_DAY)
    assert runner.step() is None and runner.host is None  # not the owner: no learner


def test_an_erased_customer_leaves_no_snapshot_and_no_row() -> None:
    """Erasure deletes the record (a tombstone): pending snapshots and the BTYD row go with it."""
    proc = processor()
    kept, _, _ = run_days(proc, "keep", {DAY0}, 20)
    erased, _, _ = run_days(proc, "gone", {DAY0, DAY0 + 2}, 20)
    assert erased["churn"]["snap"]
    table = {"keep": kept, "gone": erased}
    del table["gone"]  # what the pipeline's erase does to the customers table
    sweep = PartitionSweep()
    for state in table.values():
        sweep.count(state)
    assert sweep.btyd.n_customers == 1
    assert sweep.btyd.counts == {(0, 0, DAY0): 1}


@pytest.mark.parametrize("learning", [True, False])
def test_the_worker_default_is_the_prior_until_a_model_is_published(learning: bool) -> None:
    rt = build_runtime(Settings(learning=learning))
    model = rt.processor.churn_model(rt.churn_params)
    assert model.version_label == "churn-prior+btyd-default"
    assert model.horizon_days == 90 and model.label == "purchase"


def test_snapshots_of_the_warm_up_are_not_learnt_and_the_stream_start_is_kept() -> None:
    """The first 90 days of a stream have truncated histories: their outcomes are skipped."""
    host = ChurnLearnerHost(horizon_days=30, min_labels=1, warmup_days=90)
    host.tick(DAY0, BTYDSummary)  # the stream starts (no refit: an empty table)
    early = [{"churn": [[0.5] * 8, 1, DAY0 + d]} for d in (0, 45, 89)]
    later = [{"churn": [[0.5] * 8, 0, DAY0 + d]} for d in (90, 120)]
    assert host.learn(early + later) == 2
    assert host.warmup_skipped == 3 and host.start_day == DAY0
    message = orjson.loads(orjson.dumps(host.message(host.publish())))
    assert message["model"]["validation"]["warmup_skipped"] == 3
    again = ChurnLearnerHost.restore(message, horizon_days=30, min_labels=1, warmup_days=90)
    assert again.start_day == DAY0  # a resumed learner keeps the stream's start
    assert again.learn([{"churn": [[0.5] * 8, 0, DAY0 + 60]}]) == 0
    # a learner that first hears of the stream through outcomes takes the earliest one's day
    fresh = ChurnLearnerHost(horizon_days=30, min_labels=1, warmup_days=90)
    assert fresh.learn([{"churn": [[0.5] * 8, 0, DAY0 + 10]}]) == 0
    assert fresh.start_day == DAY0 + 10


def test_a_model_for_another_offset_is_not_installed() -> None:
    rt = build_runtime(Settings(churn_horizon_days=30, churn_offset_days=30))
    other = ChurnLearnerHost(horizon_days=30, offset_days=0)
    rt.install_churn_model(other.message(other.publish()))
    assert rt.churn_params is None
    same = ChurnLearnerHost(horizon_days=30, offset_days=30)
    rt.install_churn_model(same.message(same.publish()))
    assert rt.churn_params is not None and rt.churn_params.question == (30, "purchase", 30)
    assert rt.processor.churn_model(None).question == (30, "purchase", 30)


def test_level_thresholds_come_from_the_settings() -> None:
    rt = build_runtime(Settings(churn_medium_threshold=0.2, churn_high_threshold=0.5))
    t = rt.processor.thresholds
    assert (t.medium_enter, t.medium_exit, t.high_enter, t.high_exit) == (0.2, 0.1, 0.5, 0.4)
    with pytest.raises(ValueError, match="MEDIUM_THRESHOLD must be below"):
        Settings(churn_medium_threshold=0.6, churn_high_threshold=0.5)
