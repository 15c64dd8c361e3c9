"""The daily pass with the due-day index (streams/worker/due_index.py), through the
worker's own pipeline: the same outputs as evaluating everyone at every pass, for
far fewer evaluations; plans forgotten when they may no longer hold (no Kafka)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import orjson
import pytest
from faust.types import TP

from models.due import Due
from models.eventtime import MS_PER_DAY, day_of, parse_ts
from streams.codec import decode_state
from streams.tools.quality import QualityConfig, _OnlineRun
from streams.tools.simulator import Simulation
from streams.worker.pass_review import PLAN_AFTER_SILENT_DAYS
from streams.worker.sweep import PartitionSweep, partition_keys
from tests.streams.conftest import Feeder, purchase, record

pytestmark = pytest.mark.timeout(300)

OUTPUTS = ("segment-changes", "churn-risk")
SILENT_DAYS = 150  # after the last event: lifecycle, churn and cluster moves of silence


def history(customers: int, days: int, seed: int) -> list[tuple[str, bytes, bytes]]:
    sim = Simulation(customers=customers, days=days, seed=seed, bad_fraction=0.0)
    return list(sim.raw_records())


def day_of_record(value: bytes) -> int:
    ts = orjson.loads(value)["ts"]
    return day_of(ts if type(ts) is int else parse_ts(ts))


@pytest.fixture(scope="module")
def cluster_model() -> dict[str, Any]:
    """A cluster model as the learner publishes it, from another simulated history."""
    run = _OnlineRun(QualityConfig(customers=150, days=60, learner={"warmup": 100}))
    run.replay(Simulation(customers=150, days=60, seed=11).events())
    assert run.rt.assigner is not None and run.host.learner is not None
    return run.host.snapshot_message()


class Passes:
    """Drives an app the way a worker runs: a day's events, then the next day's pass."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.offsets: Counter[str] = Counter()
        self.evaluations = 0
        processor = app.segmenter.processor
        evaluate = processor.evaluate

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.evaluations += 1
            return evaluate(*args, **kwargs)

        processor.evaluate = counted

    async def deliver(self, records: list[tuple[str, bytes, bytes]]) -> None:
        groups: dict[TP, list[Any]] = defaultdict(list)
        rt = self.app.segmenter
        for topic, key, value in records:
            full = rt.settings.topic(topic)
            groups[TP(full, 0)].append(record(full, self.offsets[topic], value, key))
            self.offsets[topic] += 1
        for future in await self.app.batch_sink.handle(list(groups.items())):
            assert await future

    async def run_pass(self, day: int) -> int:
        """The pass of ``day`` over partition 0; the evaluations it made."""
        pipeline, rt = self.app.pipeline, self.app.segmenter
        before = self.evaluations
        keys, _ = partition_keys(pipeline.customers.table, 0, None, 10**9)
        self.sweep = PartitionSweep(clock_ms=day * MS_PER_DAY)
        await pipeline.review_partition(keys, 0, self.sweep)
        await pipeline.drain()
        # (what streams.worker.daily_sweep.finish_sweep records of a complete pass)
        rt.partition_stats.setdefault(0, {})["reviewed_through"] = day
        return self.evaluations - before

    async def history(
        self,
        records: list[tuple[str, bytes, bytes]],
        silent_days: int = SILENT_DAYS,
        pass_every: int = 1,
    ) -> int:
        """Every day's events then the next day's pass (every ``pass_every`` days:
        a worker whose passes fall behind); the passes' evaluations."""
        by_day: dict[int, list[tuple[str, bytes, bytes]]] = defaultdict(list)
        for topic, key, value in records:
            by_day[day_of_record(value)].append((topic, key, value))
        evaluations = 0
        first, last = min(by_day), max(by_day)
        for day in range(first, last + silent_days):
            if by_day.get(day):
                await self.deliver(by_day[day])
            if (day + 1) % pass_every == 0:
                evaluations += await self.run_pass(day + 1)
        return evaluations

    def outputs(self) -> dict[str, list[Any]]:
        """Every output of the run, per customer, in the order it was sent."""
        per_customer: dict[str, list[Any]] = defaultdict(list)
        for topic in OUTPUTS:
            for key, value in self.app.pipeline.outputs[topic].sent:
                per_customer[key.decode()].append((topic, value))
        return dict(per_customer)

    def states(self) -> dict[str, Any]:
        pipeline = self.app.pipeline
        keys, _ = partition_keys(pipeline.customers.table, 0, None, 10**9)
        return {k: decode_state(pipeline.customers.get(k, 0)) for k in keys}


def comparable(state: Any) -> Any:
    """A stored state without what a pass that changes nothing may leave behind
    (its evaluation day and the churn score cache are not written back)."""
    state = dict(state)
    state.pop("eval_day", None)
    churn = dict(state.get("churn") or {})
    churn.pop("score", None)
    state["churn"] = churn
    return state


@pytest.mark.parametrize(
    ("with_model", "pass_every"),
    [(False, 1), (True, 1), (True, 3)],
    ids=["rules+churn", "with clusters", "a pass every third day"],
)
async def test_passes_with_the_index_send_what_evaluating_everyone_sends(
    make_app: Any, cluster_model: dict[str, Any], with_model: bool, pass_every: int
) -> None:
    """Same outputs (ids, times, segments, churn levels, reasons) and the same
    segments in the store, for a fraction of the evaluations."""
    records = history(customers=40, days=90, seed=5)
    runs = {}
    for indexed in (True, False):
        app = make_app(sweep_due_index=indexed, app_id=f"due-{indexed}")
        if with_model:
            assert app.segmenter.install_model(cluster_model)
        passes = Passes(app)
        runs[indexed] = (passes, await passes.history(records, pass_every=pass_every))
    (indexed, with_index), (everyone, without_index) = runs[True], runs[False]
    sent = indexed.outputs()
    assert sent == everyone.outputs()
    changes = sum(len(v) for v in sent.values())
    assert changes > 100  # (lifecycle, value, churn and cluster moves of silence too)
    assert {k: comparable(s) for k, s in indexed.states().items()} == {
        k: comparable(s) for k, s in everyone.states().items()
    }
    assert with_index < 0.7 * without_index, (with_index, without_index)
    # The statistics of the last pass (segment sizes, churn levels, the BTYD and
    # spend tables the churn learner fits), read from the plans of skipped customers.
    assert statistics(indexed.sweep) == statistics(everyone.sweep)
    # What the learners get: cluster samples (weekly refreshes of silent customers
    # too) and matured churn outcomes.
    samples = indexed.app.segmenter.training_buffer
    assert samples == everyone.app.segmenter.training_buffer
    assert sum("churn" in sample for sample in samples) > 0


def statistics(sweep: PartitionSweep) -> Any:
    return (
        sweep.customers,
        sweep.sizes,
        sweep.churn_levels,
        sweep.btyd.to_dict(),
        sweep.spend.to_dict(),
    )


async def test_an_event_makes_a_planned_customer_due_at_the_next_pass(make_app: Any) -> None:
    app = make_app(sweep_due_index=True)
    passes = Passes(app)
    feed = Feeder(app)
    t0 = 1_767_225_600_000  # 2026-01-01
    assert await feed.put("purchases", purchase("o1", t0))
    day = day_of(t0)
    silent = PLAN_AFTER_SILENT_DAYS
    for after in range(1, silent):  # evaluated every day, not planned yet
        assert await passes.run_pass(day + after) == 1
        assert app.segmenter.due_index.planned(0, "c1") is None
    assert await passes.run_pass(day + silent) == 1  # evaluated and planned
    due = app.segmenter.due_index.planned(0, "c1")
    assert due is not None and due.day is not None and due.day > day + silent + 1
    assert await passes.run_pass(day + silent + 1) == 0  # nothing can change: skipped
    metrics = app.segmenter.metrics
    assert metrics.sample("segmenter_sweep_customers_total", outcome="skipped") == 1
    assert metrics.sample("segmenter_sweep_customers_total", outcome="evaluated") == silent
    assert await feed.put("purchases", purchase("o2", t0 + (silent + 1) * MS_PER_DAY + 1000))
    assert app.segmenter.due_index.planned(0, "c1") is None
    assert await passes.run_pass(day + silent + 2) == 1


async def test_new_churn_models_other_cluster_ids_and_rebalances_void_every_plan(
    make_app: Any, cluster_model: dict[str, Any]
) -> None:
    app = make_app(sweep_due_index=True)
    rt = app.segmenter
    passes = Passes(app)
    records = history(customers=20, days=30, seed=3)
    await passes.history(records, silent_days=PLAN_AFTER_SILENT_DAYS + 3)
    assert len(rt.due_index) > 0
    assert rt.install_model(cluster_model)  # new cluster ids: everyone meets them
    assert len(rt.due_index) == 0
    day = day_of(rt.clock.now_ms) + 10
    await passes.run_pass(day)
    await passes.run_pass(day + 1)
    planned = len(rt.due_index)
    assert planned > 0
    refreshed = orjson.loads(orjson.dumps(cluster_model))  # same ids, other centroids
    refreshed["snapshot"]["as_of_ms"] = refreshed["snapshot"].get("as_of_ms", 0) + 1
    assert rt.install_model(refreshed)
    assert len(rt.due_index) == planned  # refreshed centroids: decided, plans stay
    churn = {"kind": "churn", "model": rt.processor.churn_model().to_dict()}
    assert rt.install_churn_model(churn)
    assert len(rt.due_index) == 0
    await passes.run_pass(day + 2)
    await passes.run_pass(day + 3)
    assert len(rt.due_index) > 0
    await app.on_partitions_assigned.send(set())
    assert len(rt.due_index) == 0


def test_the_index_can_be_turned_off(make_app: Any) -> None:
    index = make_app(sweep_due_index=False).segmenter.due_index
    index.record(0, "c1", Due(10, "churn"))
    assert not index.skips(0, "c1", 5) and len(index) == 0
