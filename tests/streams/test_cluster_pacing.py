"""The cluster model's worker side: samples with their time, the stream-time watermark,
refused model records, model events on segment-changes, the change-rate figure."""

from __future__ import annotations

import base64
import pickle
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.cluster_config import ClusterConfig
from models.clustering import SegmentLearner
from models.eventtime import MS_PER_DAY, format_ts
from models.processing import REFRESH_SAMPLE_MS, training_samples
from models.rules import RuleEngine, RulesConfig
from schemas import validate_output
from streams.settings import Settings
from streams.worker.app import build_runtime
from streams.worker.learner import WARMUP_DAYS, LearnerHost
from streams.worker.model_events import MODEL_KEY, model_change_events
from streams.worker.runtime import Runtime

DAY = MS_PER_DAY


def runtime(partitions: int = 2, **settings: Any) -> Runtime:
    return build_runtime(Settings(partitions=partitions, cluster_warmup=40, **settings))


def host_of(rt: Runtime) -> LearnerHost:
    """A host whose learner clusters from the first day (the worker waits two weeks)."""
    return LearnerHost(
        rt, learner=SegmentLearner(**{**LearnerHost(rt).learner_params(), "warmup_days": 0})
    )


def samples(day: int, n: int = 60, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed + day)
    out = []
    for i in range(n):
        big = i % 2 == 0
        x = {"order_value": rng.gauss(5.0 if big else 2.0, 0.2), "purchase_rate": rng.random()}
        out.append({"k": f"key{i}", "x": x, "t": day * DAY + 1000 + i})
    return out


# --------------------------------------------------------------------- watermark


def test_the_learner_waits_for_the_slowest_partition() -> None:
    host = host_of(runtime(partitions=2))
    host.learn(samples(0), through={"0": 3 * DAY})
    assert host.watermark() is None and not host.advance()  # partition 1 never reported
    host.learn([], through={"1": DAY // 2})
    assert host.watermark() == DAY // 2 and not host.advance()  # day 0 not complete everywhere
    host.learn([], through={"1": DAY + 5})
    assert host.advance() and host.should_publish()
    learner = host.ensure_learner()
    assert learner.ready and learner.as_of_ms == DAY
    host.learn([], through={"0": DAY})  # a partition's mark never goes back
    assert host.through[0] == 3 * DAY


def test_batches_in_any_order_give_the_same_published_model() -> None:
    batches = [samples(day, seed=day) for day in range(4)]
    messages = []
    for order in (list(range(4)), [2, 0, 3, 1]):
        host = host_of(runtime())
        for i in order:
            host.learn(batches[i])
        host.learn([], through={"0": 4 * DAY, "1": 4 * DAY})
        assert host.advance()
        message = host.snapshot_message()
        messages.append((message["snapshot"]["centroids"], message["snapshot"]["version"]))
    assert messages[0] == messages[1]


def test_the_worker_forms_the_first_clusters_after_two_weeks_of_history() -> None:
    host = LearnerHost(runtime())
    for day in range(WARMUP_DAYS + 1):
        host.learn(samples(day, seed=day), through={"0": (day + 1) * DAY, "1": (day + 1) * DAY})
        # the first boundary at least two weeks after the first sample (day 0, 1 s in)
        assert host.advance() == (day >= WARMUP_DAYS), day
    assert host.ensure_learner().events[0]["as_of_ms"] == (WARMUP_DAYS + 1) * DAY


def test_k_bounds_come_from_the_segments_yaml() -> None:
    rt = runtime()
    rt.processor.rules = RuleEngine(RulesConfig(clusters=ClusterConfig(k_min=3, k_max=3)))
    host = LearnerHost(rt)
    learner = host.ensure_learner()
    assert (learner.k_min, learner.k_max) == (3, 3)


def test_a_forged_state_is_refused_counted_and_the_snapshot_resumes(tmp_path: Path) -> None:
    host = host_of(runtime())
    host.learn(samples(0), through={"0": DAY, "1": DAY})
    host.advance()
    message = orjson.loads(orjson.dumps(host.snapshot_message()))
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    forged = dict(message, state=base64.b64encode(pickle.dumps(Exploit())).decode())
    rt = runtime()
    assert rt.install_model(forged)  # the snapshot itself is fine: workers assign with it
    restored = LearnerHost(rt).ensure_learner()
    assert not marker.exists()
    assert rt.metrics.sample("segmenter_model_records_rejected_total", reason="state") == 1
    assert restored.ids == host.ensure_learner().ids  # resumed from the snapshot


def test_install_model_refuses_malformed_records_and_keeps_the_previous_model() -> None:
    host = host_of(runtime())
    host.learn(samples(0), through={"0": DAY, "1": DAY})
    host.advance()
    good = orjson.loads(orjson.dumps(host.snapshot_message()))
    rt = runtime()
    assert rt.install_model(good)
    assigner = rt.assigner
    bad = [
        ["not", "an", "object"],
        {"snapshot": {"centroids": {"c0": {}}, "profiles": {"c0": {"order_value": "x"}}}},
    ]
    churn_model = rt.churn_params
    bad_churn = [{"kind": "churn"}, {"kind": "churn", "model": {"weights": "x"}}]
    for record in [*bad, *bad_churn]:
        assert not rt.install_model(record)  # type: ignore[arg-type]
    assert rt.assigner is assigner and rt.model_message is good
    assert rt.churn_params is churn_model
    assert rt.metrics.sample("segmenter_model_records_rejected_total", reason="snapshot") == 2
    assert rt.metrics.sample("segmenter_model_records_rejected_total", reason="churn") == 2


# --------------------------------------------------------------------- worker samples


def test_silent_customers_send_a_refresh_sample_every_week() -> None:
    rt = runtime()
    processor = rt.processor
    purchase = {
        "event_id": "p1",
        "ts": 10 * DAY + 5,
        "order_id": "o1",
        "amount": 30.0,
        "items": 1,
        "category": "home",
    }
    result = processor.handle("c1", None, "purchases", purchase, None)
    state = result.state
    assert state is not None
    [event_sample] = training_samples("c1", result, b"pacing-test")
    assert event_sample["t"] == 10 * DAY + 5 and event_sample["x"]["purchase_rate"] > 0
    # The sweep brings the silent customer to later days.
    review = processor.review("c1", state, 16, None)
    assert not review.refresh  # only six days
    review = processor.review("c1", state, 18, None)
    # the first day start a full week after the last sample (day 10 + 5 ms): day 18
    assert REFRESH_SAMPLE_MS == 7 * DAY
    assert [t for t, _ in review.refresh] == [18 * DAY]
    assert review.write  # the sample time is remembered
    [refresh] = training_samples("c1", review, b"pacing-test")
    assert refresh["x"]["dormancy"] > event_sample["x"]["dormancy"]  # what the sweep sees
    assert "btyd" not in refresh


def test_a_profile_alone_gets_no_cluster_and_sends_no_sample() -> None:
    host = host_of(runtime())
    host.learn(samples(0), through={"0": DAY, "1": DAY})
    host.advance()
    rt = runtime()
    rt.install_model(orjson.loads(orjson.dumps(host.snapshot_message())))
    profile = {"event_id": "p1", "ts": 2 * DAY, "attributes": {"country": "DE"}}
    result = rt.processor.handle("c2", None, "profiles", profile, rt.assigner)
    assert training_samples("c2", result, b"pacing-test") == []
    assert "cluster" not in result.state["seg"]  # type: ignore[index]
    support = {"event_id": "s1", "ts": 2 * DAY + 9, "ticket_id": "t1", "status": "opened"}
    result = rt.processor.handle("c2", result.state, "support", support, rt.assigner)
    assert result.state["seg"]["cluster"]["current"] is not None  # type: ignore[index]


# --------------------------------------------------------------------- model events


def test_model_changes_become_valid_segment_change_events() -> None:
    snapshot = {
        "version": 9,
        "as_of_ms": 20 * DAY,
        "labels": {"c0": "frequent buyers", "c2": "lapsing", "c3": "promoters"},
        "events": [
            {"kind": "init", "k": 2, "ids": ["c0", "c1"], "version": 1, "as_of_ms": DAY},
            {"kind": "split", "from": "c0", "into": ["c0", "c3"], "version": 8},
            {"kind": "merge", "from": ["c2", "c1"], "into": "c2", "version": 9},
            {"kind": "relabel", "id": "c0", "from_label": "buyers", "label": "x", "version": 9},
        ],
    }
    events = model_change_events(snapshot, since_version=7)
    assert [(e["model_change"]["kind"], e["previous"], e["current"]) for e in events] == [
        ("split", "c0", "c3"),
        ("merge", "c1", "c2"),
        ("relabel", "c0", "c0"),
    ]
    for event in events:
        validate_output("segment-changes", event)
        assert event["customer_id"] == MODEL_KEY and event["segment_type"] == "cluster"
    assert events[1]["seq"] == 9 and events[1]["ts"] == format_ts(20 * DAY)
    assert events[2]["model_change"]["previous_label"] == "buyers"
    everything = model_change_events(snapshot, since_version=None)
    assert [e["previous"] for e in everything[:2]] == [None, None]  # init: null -> c0, c1
    assert everything[0]["ts"] == format_ts(DAY)
    again = model_change_events(snapshot, since_version=7)
    assert [e["event_id"] for e in again] == [e["event_id"] for e in events]  # deterministic


# --------------------------------------------------------------------- change rate


def test_the_change_rate_counts_moves_between_clusters_per_customer() -> None:
    rt = runtime()

    def change(day: int, previous: str | None, current: str | None, **extra: Any) -> dict:
        ts = format_ts(day * DAY + 100)
        return {
            "segment_type": "cluster",
            "previous": previous,
            "current": current,
            "ts": ts,
            **extra,
        }

    rt.count_cluster_changes(0, [change(100, None, "c1")])  # a first assignment: not a move
    rt.count_cluster_changes(0, [change(101, "c1", "c2"), change(120, "c2", "c1")])
    rt.count_cluster_changes(1, [change(125, "c3", None)])  # leaving (opt-out): not a move
    rt.count_cluster_changes(1, [change(125, "c3", "c4", model_change={})])  # not a customer
    rt.partition_stats[0] = {"customers": 10, "cluster_changes": rt.cluster_change_stats(0, 125)}
    rt.partition_stats[1] = {"customers": 10, "cluster_changes": rt.cluster_change_stats(1, 125)}
    assert rt.cluster_change_rate(125) == pytest.approx(2 / 20)
    assert rt.cluster_change_rate(140) == pytest.approx(1 / 20)  # day 101 left the window
    # A worker taking partition 0 over goes on from what the last owner published.
    other = runtime()
    other.remote_stats["p0"] = dict(rt.partition_stats[0])
    other.count_cluster_changes(0, [change(126, "c1", "c5")])
    assert sum(other.cluster_change_stats(0, 126).values()) == 3
