"""The CLV's models in the worker: spend tables from the sweep, fitted and
published by the churn learner, installed on every worker (no Kafka)."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from models.clv import customer_value
from models.eventtime import MS_PER_DAY
from models.gamma_gamma import fit_gamma_gamma
from models.kpis import KpiTracker
from models.processing import result_features
from streams.settings import Settings
from streams.worker.app import build_runtime
from streams.worker.churn_learner import ChurnLearnerHost
from streams.worker.churn_runner import ChurnLearnerRunner, base_spend
from streams.worker.sweep import PartitionSweep

DAY0 = 20_000  # a UTC day number


def purchase(cid: str, day: int, amount: float) -> dict[str, Any]:
    return {
        "event_id": f"{cid}-{day}",
        "customer_id": cid,
        "ts": day * MS_PER_DAY + 3_600_000,
        "order_id": f"{cid}-{day}",
        "amount": amount,
        "items": 1,
    }


def history(rt: Any, customers: int, days: int = 60, seed: int = 1) -> dict[str, Any]:
    """Customers buying on a few days at their own spend level, swept daily."""
    rng = random.Random(seed)
    proc, model = rt.processor, rt.churn_params
    states: dict[str, Any] = {}
    plans = {
        f"c{i}": (
            set(rng.sample(range(DAY0, DAY0 + days - 1), rng.randint(1, 5))),
            rng.lognormvariate(3.5, 0.6),
        )
        for i in range(customers)
    }
    for day in range(DAY0, DAY0 + days):
        for cid, (buy_days, level) in plans.items():
            state = states.get(cid)
            if state is not None:
                proc.review(cid, state, day, None, model)
            if day in buy_days:
                amount = round(level * rng.uniform(0.7, 1.3), 2)
                event = purchase(cid, day, amount)
                states[cid] = proc.handle(cid, state, "purchases", event, None, model).state
    return states


def test_the_sweeps_spend_table_holds_every_repeat_customers_summary() -> None:
    rt = build_runtime(Settings())
    states = history(rt, 300)
    sweep = PartitionSweep()
    for state in states.values():
        sweep.count(state)
    clock = (DAY0 + 60) * MS_PER_DAY
    summaries = [result_features(s, clock) for s in states.values()]
    repeat = [(f["frequency"], f["monetary_value"]) for f in summaries if f["frequency"] > 0]
    assert sweep.spend.n_customers == len(repeat) > 100
    x, m, w = sweep.spend.table()
    assert float((m * w).sum()) == pytest.approx(sum(mv for _, mv in repeat), rel=1e-9)
    assert float((x * w).sum()) == sum(f for f, _ in repeat)
    # what the learner fits on equals the fit on the customers' own summaries
    table = base_spend(type("Rt", (), {"remote_stats": {"p0": {"spend": sweep.spend.to_dict()}}}))
    raw = fit_gamma_gamma([f for f, _ in repeat], [mv for _, mv in repeat])
    host = ChurnLearnerHost()
    assert host.refit_spend(table, DAY0 + 60)
    assert host.spend is not None
    assert host.spend.population_mean == pytest.approx(raw.population_mean, rel=1e-3)


def test_the_churn_learner_publishes_the_spend_model_and_workers_compute_clvs() -> None:
    rt = build_runtime(Settings(churn_refit_days=7))
    states = history(rt, 300)
    sweeps = [PartitionSweep(), PartitionSweep()]
    for i, state in enumerate(states.values()):
        sweeps[i % 2].count(state)
    # At first only the BTYD tables are heard (sweeps of workers without spend tables).
    for p, sweep in enumerate(sweeps):
        rt.remote_stats[f"p{p}"] = {"btyd": sweep.btyd.to_dict()}
    runner = ChurnLearnerRunner(rt, lambda: True)
    rt.clock.observe((DAY0 + 60) * MS_PER_DAY)
    first = runner.step()
    assert first is not None and first["spend"] is None  # a BTYD fit, no spend table yet
    for p, sweep in enumerate(sweeps):
        rt.remote_stats[f"p{p}"] = {"btyd": sweep.btyd.to_dict(), "spend": sweep.spend.to_dict()}
    assert runner.step() is None  # the same day: no second try
    rt.clock.observe((DAY0 + 61) * MS_PER_DAY)
    second = runner.step()  # the next day: the spend model is fitted (daily until then)
    assert second is not None and second["spend"] is not None
    assert second["spend"]["version"] == f"d{DAY0 + 61}"
    assert (
        second["spend"]["n_customers"] == sweeps[0].spend.n_customers + sweeps[1].spend.n_customers
    )
    rt.clock.observe((DAY0 + 62) * MS_PER_DAY)
    assert runner.step() is None  # fitted: next with the BTYD refits, every 7 days
    # Every worker installs it; the CLV of a customer is then the models' value.
    worker = build_runtime(Settings(churn_refit_days=7))
    assert worker.install_model(orjson.loads(orjson.dumps(second)))
    tracker = worker.processor.tracker
    assert isinstance(tracker, KpiTracker)
    assert tracker.spend is not None and tracker.purchases is not None
    assert tracker.purchases.day == DAY0 + 60
    cid, state = next((c, s) for c, s in states.items() if s["churn"]["b"][0] > 0)
    assert state["kc"][3] is None  # no CLV without the models
    worker.processor.review(cid, state, DAY0 + 62, None, worker.churn_params)
    f = result_features(state, (DAY0 + 62) * MS_PER_DAY)
    want = customer_value(
        f["frequency"], f["recency"], f["T"], f["monetary_value"], tracker.purchases, tracker.spend
    )
    assert want is not None and want > 0
    # (stored at the first day evaluated with the models; refreshed beyond 5 %)
    assert state["kc"][3] == pytest.approx(want, rel=0.05)
    # A learner that moves to another worker resumes with the spend model.
    again = ChurnLearnerHost.restore(second, horizon_days=90)
    assert again.spend == tracker.spend and not again.spend_due(DAY0 + 62)


def test_an_erased_customer_leaves_the_spend_table_at_the_next_pass() -> None:
    rt = build_runtime(Settings())
    states = history(rt, 40)
    repeaters = [c for c, s in states.items() if s["churn"]["b"][0] > 0]
    before = PartitionSweep()
    for state in states.values():
        before.count(state)
    del states[repeaters[0]]  # what the pipeline's erase does to the customers table
    after = PartitionSweep()
    for state in states.values():
        after.count(state)
    assert after.spend.n_customers == before.spend.n_customers - 1


def test_a_malformed_spend_model_is_refused_and_counted() -> None:
    rt = build_runtime(Settings())
    host = ChurnLearnerHost()
    message = host.message(host.publish())
    message["spend"] = {"p": -1.0, "q": 2.0, "v": 3.0}  # not a model
    assert rt.install_model(message) is False
    assert rt.churn_params is None
    assert rt.processor.tracker is not None and rt.processor.tracker.spend is None
    assert rt.metrics.sample("segmenter_model_records_rejected_total", reason="churn") == 1.0
