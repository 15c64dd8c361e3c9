"""KPIs, memberships and experiment arms through the worker's batch sink (no Kafka)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.eventtime import MS_PER_DAY
from models.experiments import arm_of
from models.kpis import Totals
from schemas import validate_output
from streams.codec import decode_state
from streams.worker.daily_sweep import finish_sweep
from streams.worker.segment_api import experiments_document
from streams.worker.sweep import PartitionSweep, partition_keys
from streams.worker.web import segment_catalogue
from tests.streams.conftest import Feeder, RecordingTopic, event, record

DAY = MS_PER_DAY
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def buy(customer: str, event_id: str, ts: int, amount: float) -> bytes:
    return orjson.dumps(
        {"event_id": event_id, "customer_id": customer, "ts": ts, "order_id": event_id,
         "amount": amount}
    )  # fmt: skip


def browse(customer: str, event_id: str, ts: int, action: str) -> bytes:
    return orjson.dumps(
        {"event_id": event_id, "customer_id": customer, "ts": ts, "session_id": "s",
         "action": action}
    )  # fmt: skip


@pytest.fixture
def experiment_app(make_app: Any, tmp_path: Path) -> Any:
    config = tmp_path / "segments.yaml"
    config.write_text(
        "experiments:\n  - {name: welcome, segment: lifecycle.new, holdout: 0.5, window_days: 7}\n"
    )
    return make_app(segments_config=config)


async def run_pass(app: Any) -> None:
    """One sweep pass over partition 0, as the clock-ticks agent runs it."""
    rt, pipeline = app.segmenter, app.pipeline
    rt.kpis.begin_pass(0)
    await pipeline.drain()
    sweep = PartitionSweep(clock_ms=rt.clock.now_ms)
    keys, _ = partition_keys(pipeline.customers.table, 0, None, 2000)
    rt.kpis.listed(0, [orjson.dumps(k) for k in keys])
    await pipeline.review_partition(keys, 0, sweep)
    finish_sweep(rt, 0, sweep)
    rt.remote_stats["p0"] = {"kpis": rt.kpis.record(0)}  # as published on stream-clock


def recount(app: Any, customers: list[str]) -> Totals:
    totals = Totals()
    for customer in customers:
        state = decode_state(app.pipeline.customers.get(customer, 0))
        totals.add((state or {}).get("kc"), 1, app.segmenter.kpis.floor())
    return totals


async def test_kpis_follow_events_and_a_pass_derives_the_same_sums(app: Any) -> None:
    feed = Feeder(app)
    await feed.put("browsing", browse("a", "b1", T0, "product_view"), key=b"a")
    await feed.put("browsing", browse("b", "b2", T0 + 1, "page_view"), key=b"b")
    await feed.put("browsing", browse("b", "b3", T0 + 2, "product_view"), key=b"b")  # no evaluation
    await feed.put("purchases", buy("a", "o1", T0 + 10, 30.0), key=b"a")
    await feed.put("purchases", buy("c", "o2", T0 + 20, 70.0), key=b"c")
    live = app.segmenter.kpis.partitions[0].live
    assert live.seg == recount(app, ["a", "b", "c"]).seg
    # a and c bought (lifecycle new); b is a prospect who viewed a product.
    new = live.seg["lifecycle.new"]
    assert new[:4] == [2, 2, 1, 1]  # customers, active, viewed, viewed and bought
    assert new[8] == pytest.approx(100.0)
    assert live.seg["lifecycle.prospect"][:3] == [1, 1, 1]
    await run_pass(app)
    assert app.segmenter.kpis.derived(0)
    catalogue = segment_catalogue(app.segmenter)
    kpis = {(s["type"], s["id"]): s["kpis"] for s in catalogue["segments"]}
    assert kpis[("lifecycle", "new")]["customers"] == 2
    assert kpis[("lifecycle", "new")]["entered_30d"] == 2
    assert kpis[("lifecycle", "new")]["conversion_30d"] == 1.0
    assert kpis[("lifecycle", "new")]["revenue_30d"] == pytest.approx(100.0)
    assert kpis[("lifecycle", "prospect")]["conversion_30d"] == 0.0
    assert kpis[("lifecycle", "lapsed")]["active_30d_share"] is None  # no member: unknown
    assert kpis[("churn", "low")]["customers"] == 3
    assert catalogue["kpis"]["complete"] is True


async def test_memberships_follow_changes_and_erasure_tombstones_them(app: Any) -> None:
    feed = Feeder(app)
    await feed.put("purchases", buy("c1", "o1", T0, 20.0), key=b"c1")
    records = app.pipeline.outputs["segment-memberships"].sent
    current = {key: value for key, value in records}
    assert current[b"c1|lifecycle"]["segment"] == "new"
    assert current[b"c1|churn"]["segment"] == "low"
    for value in current.values():
        validate_output("segment-memberships", value)
    types = {key.split(b"|")[1] for key in current}
    await feed.put("privacy", event("x1", T0 + DAY, action="erase"), key=b"c1")
    latest = {key: value for key, value in records}
    assert {key.split(b"|")[1] for key, value in latest.items() if value is None} == types
    assert app.segmenter.kpis.partitions[0].live.seg["lifecycle.new"][0] == 0


async def test_opting_out_leaves_every_audience_and_the_kpis(app: Any) -> None:
    feed = Feeder(app)
    await feed.put("purchases", buy("c1", "o1", T0, 20.0), key=b"c1")
    await feed.put("privacy", event("x1", T0 + DAY, action="opt_out"), key=b"c1")
    latest = dict(app.pipeline.outputs["segment-memberships"].sent)
    assert all(value is None for value in latest.values())
    assert not any(v[0] for v in app.segmenter.kpis.partitions[0].live.seg.values())


async def test_entering_the_experiment_segment_carries_the_arm(experiment_app: Any) -> None:
    app = experiment_app
    customers = [f"c{i}" for i in range(40)]
    feed = Feeder(app)
    for i, customer in enumerate(customers):
        await feed.put("purchases", buy(customer, f"o{i}", T0 + i, 10.0), key=customer.encode())
    # Half of them buy again within the 7-day window (outcome: purchased).
    for i, customer in enumerate(customers[::2]):
        await feed.put(
            "purchases", buy(customer, f"r{i}", T0 + 2 * DAY, 5.0), key=customer.encode()
        )
    changes = [v for _, v in app.pipeline.outputs["segment-changes"].sent]
    entering = [c for c in changes if c["segment_type"] == "lifecycle" and c["current"] == "new"]
    assert len(entering) == len(customers)
    for change in changes:
        validate_output("segment-changes", change)
        expected = [{"name": "welcome", "arm": arm_of("welcome", change["customer_id"], 0.5)}]
        assert change["experiments"] == (expected if change in entering else [])
    for _, churn in app.pipeline.outputs["churn-risk"].sent:
        assert churn["experiments"] == []
    # The windows close at the start of day 7 after entry, at the daily evaluation.
    app.segmenter.clock.observe(T0 + 8 * DAY)
    await run_pass(app)
    report = experiments_document(app.segmenter)
    (welcome,) = report["experiments"]
    arms = welcome["arms"]
    assert arms["treatment"]["customers"] + arms["holdout"]["customers"] == 40
    assert arms["treatment"]["completed"] + arms["holdout"]["completed"] == 40
    repeaters = set(customers[::2])
    for arm in ("treatment", "holdout"):
        members = [c for c in customers if arm_of("welcome", c, 0.5) == arm]
        bought = sum(c in repeaters for c in members) / len(members)
        assert arms[arm]["outcomes"]["purchase_share"] == pytest.approx(bought)
        revenue = 5.0 * sum(c in repeaters for c in members) / len(members)
        assert arms[arm]["outcomes"]["revenue_per_customer"] == pytest.approx(revenue)


async def test_customers_recorded_before_the_upgrade_get_their_memberships(app: Any) -> None:
    """A record without a KPI contribution (written by an older version) gets all
    its current memberships published at its first evaluation, and joins the KPIs."""
    tracker, app.segmenter.processor.tracker = app.segmenter.processor.tracker, None
    await Feeder(app).put("purchases", buy("old", "o1", T0, 20.0), key=b"old")
    assert "kc" not in decode_state(app.pipeline.customers.get("old", 0))
    app.pipeline.outputs["segment-memberships"].sent.clear()
    app.segmenter.processor.tracker = tracker
    app.segmenter.clock.observe(T0 + 2 * DAY)
    await run_pass(app)
    published = dict(app.pipeline.outputs["segment-memberships"].sent)
    state = decode_state(app.pipeline.customers.get("old", 0))
    assert state is not None and "kc" in state
    expected = {f"old|{t}".encode(): e["current"] for t, e in state["seg"].items() if e["current"]}
    expected[b"old|churn"] = state["churn"]["level"]
    assert {k: v["segment"] for k, v in published.items()} == expected
    for value in published.values():
        validate_output("segment-memberships", value)
    assert app.segmenter.kpis.partitions[0].live.seg["churn." + state["churn"]["level"]][0] == 1


class StalledTopic(RecordingTopic):
    """An output topic whose first send waits until released (a full producer batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.calls = 0

    async def send(self, key: bytes | None = None, value: bytes | None = b"", **kw: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            await self.release.wait()
        await super().send(key, value, **kw)


async def test_memberships_keep_the_order_of_the_batches_when_the_producer_stalls(
    make_app: Any,
) -> None:
    """A compacted topic keeps the last record per key: a batch whose send waits
    must not let the next batch's newer membership go first."""
    app = make_app()
    pipeline = app.pipeline
    stalled = StalledTopic()
    pipeline.outputs["segment-memberships"] = stalled
    first = asyncio.ensure_future(
        pipeline.submit("purchases", [record("purchases", 0, buy("c1", "o1", T0, 20.0))])
    )
    while stalled.calls == 0:
        await asyncio.sleep(0)
    # The next day c1 buys for far more: new value (and lifecycle) memberships.
    second = await pipeline.submit(
        "purchases", [record("purchases", 1, buy("c1", "o2", T0 + 3 * DAY, 5_000.0))]
    )
    await asyncio.sleep(0.05)
    stalled.release.set()
    assert await asyncio.wait_for((await first).done, 5)
    assert await asyncio.wait_for(second.done, 5)
    latest: dict[bytes, Any] = {}
    written: dict[bytes, int] = {}
    for key, value in stalled.sent:
        assert key is not None
        latest[key] = value
        written[key] = written.get(key, 0) + 1
    assert max(written.values()) >= 2  # a key both batches wrote
    state = decode_state(pipeline.customers.get("c1", 0))
    assert state is not None
    for seg_type, entry in state["seg"].items():
        got = latest.get(f"c1|{seg_type}".encode())
        assert (got or {}).get("segment") == entry.get("current"), seg_type
