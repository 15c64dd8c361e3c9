#!/usr/bin/env python
"""Per-event cost of the segment KPIs and experiments (docs/segments.md, "Cost").

The same simulated history goes through ``CustomerProcessor.handle`` twice in
one run: the baseline without the KPI tracker (the worker before this
feature), then with it (two experiments configured; the churn model and the
CLV's models fitted on the history's own BTYD and spend tables, as the churn
learner does, so every buyer's churn score and CLV use fitted BG/NBD and
Pareto/NBD). Reported per event: the processing time of
both, the tracker's share, the partition sums' update
(``KpiBook.apply``) over the contribution changes the run produced, the
``segment-memberships`` records per output, and the state's size and orjson
round trip with and without the stored contribution.

    .venv/bin/python scripts/bench-kpis.py [--customers 600] [--days 30]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import orjson

from models.btyd_summary import BTYDSummary
from models.churn import ChurnScorer
from models.churn_model import BTYDFit, ChurnModel, fit_btyd
from models.eventtime import MS_PER_DAY, parse_ts
from models.experiments import Experiment
from models.gamma_gamma import GammaGammaParams, fit_from_summary
from models.kpis import KpiBook, KpiTracker
from models.processing import CustomerProcessor, btyd_row, spend_row
from models.rules import RuleEngine, RulesConfig
from models.spend_summary import SpendSummary
from streams.tools.simulator import Simulation
from streams.worker.audiences import membership_records

EXPERIMENTS = (
    Experiment("welcome", "lifecycle", "new", 0.2, 14),
    Experiment("save", "churn", "high", 0.2, 30),
)
MODELS: dict[str, Any] = {}  # the fitted churn model and spend model of the run


def fitted_models(states: dict[str, Any], day: int) -> tuple[ChurnModel, GammaGammaParams]:
    """What the churn learner would publish for these customers at ``day``."""
    table, spend = BTYDSummary(), SpendSummary()
    for state in states.values():
        row = btyd_row(state)
        if row is not None:
            table.add(*row)
            money = spend_row(state)
            if money is not None:
                spend.add(*money)
    fit = fit_btyd(table, day, min_customers=50)
    params = fit_from_summary(spend)
    assert fit is not None and params is not None, "too few buyers to fit"
    return ChurnModel(btyd=fit), params


def tracker(tolerance: float = 0.05, cls: type[KpiTracker] = KpiTracker) -> KpiTracker:
    kpis = cls(EXPERIMENTS, clv_tolerance=tolerance)
    kpis.set_models(MODELS["churn"].btyd, MODELS["spend"])
    return kpis


def run(
    processor: CustomerProcessor, events: list[tuple[str, dict[str, Any]]]
) -> tuple[float, dict[str, Any], list[Any]]:
    """Seconds for ``handle`` over every event; the final states; (old, new) contributions."""
    states: dict[str, Any] = {}
    changes: list[Any] = []
    handle = processor.handle
    elapsed = 0.0
    for topic, event in events:
        customer = event["customer_id"]
        state = states.get(customer)
        old = state.get("kc") if state else None
        started = time.perf_counter()
        result = handle(customer, state, topic, event, None, MODELS.get("churn"))
        elapsed += time.perf_counter() - started
        states[customer] = result.state
        if result.state is not None and result.state.get("kc") is not old:
            changes.append((orjson.dumps(customer), old, result.state.get("kc"), result))
    return elapsed, states, changes


class TimedTracker(KpiTracker):
    """The tracker, timing its own two calls (the difference of two totals is noisy)."""

    seconds = 0.0

    def applied(self, *args: Any) -> None:
        started = time.perf_counter()
        super().applied(*args)
        self.seconds += time.perf_counter() - started

    def evaluated(self, *args: Any) -> None:  # type: ignore[override]
        started = time.perf_counter()
        super().evaluated(*args)
        self.seconds += time.perf_counter() - started


def best(fn: Callable[[], float], repeats: int) -> float:
    return min(fn() for _ in range(repeats))


#: Makes the processor of a run, with a KPI tracker or without (the baseline).
Processors = Callable[[KpiTracker | None], CustomerProcessor]


def simulated_events(customers: int, days: int) -> list[tuple[str, dict[str, Any]]]:
    """The simulated history, ``ts`` as epoch ms (what the worker handles)."""
    events = []
    for topic, event in Simulation(customers=customers, days=days, seed=3).events():
        events.append((topic, {**event, "ts": parse_ts(event["ts"])}))
    return events


def fresh_churn_model() -> None:
    """A fresh copy of the fitted churn model: its BTYD quantities are memoised per fit."""
    MODELS["churn"] = ChurnModel(btyd=BTYDFit.from_dict(MODELS["churn"].btyd.to_dict()))


def handle_seconds(
    processor: Processors, events: list[tuple[str, dict[str, Any]]], repeats: int
) -> tuple[float, float]:
    """Best seconds of ``handle`` over the events without KPIs and with them."""
    # Alternated, best of each: a busy machine slows both alike.
    baseline = with_kpis = float("inf")
    for _ in range(repeats):
        fresh_churn_model()
        baseline = min(baseline, run(processor(None), events)[0])
        fresh_churn_model()
        with_kpis = min(with_kpis, run(processor(tracker()), events)[0])
    return baseline, with_kpis


def tracker_seconds(
    processor: Processors, events: list[tuple[str, dict[str, Any]]], repeats: int
) -> float:
    """Best seconds spent inside the tracker (timed directly: a difference of totals is noisy)."""
    inside = float("inf")
    for _ in range(repeats):
        fresh_churn_model()
        timed = tracker(cls=TimedTracker)
        run(processor(timed), events)
        inside = min(inside, timed.seconds)
    return inside


def book_seconds(changes: list[Any], stored: list[Any], repeats: int) -> tuple[float, float]:
    """Best seconds of ``KpiBook.apply`` over the changes; of a pass per stored customer."""
    book = KpiBook(today=lambda: 10**6)

    def apply_all() -> float:
        started = time.perf_counter()
        for key, old, new, _ in changes:
            book.apply(0, key, old, new)
        return time.perf_counter() - started

    book_s = best(apply_all, repeats)

    def derive() -> float:  # what a pass adds to the reading of each customer
        started = time.perf_counter()
        book.begin_pass(1)
        for i, kc in enumerate(stored):
            book.count(1, b"%08d" % i, kc)
        book.end_pass(1)
        return time.perf_counter() - started

    return book_s, best(derive, repeats) / len(stored)


def membership_seconds(changes: list[Any], repeats: int) -> tuple[float, int]:
    """Best seconds of the ``segment-memberships`` records of the run's results; their count."""
    results = [SimpleNamespace(segment_changes=r.segment_changes, churn_events=r.churn_events)
               for *_, r in changes]  # fmt: skip
    outputs = sum(len(r.segment_changes) + len(r.churn_events) for r in results)

    def memberships() -> float:
        started = time.perf_counter()
        for result in results:
            membership_records(result)
        return time.perf_counter() - started

    return best(memberships, repeats), outputs


def roundtrip(pool: dict[str, Any], repeats: int) -> tuple[float, float]:
    """Mean state size in bytes; best seconds of an orjson round trip per state."""
    blobs = [orjson.dumps(s) for s in pool.values()]

    def once() -> float:  # what the worker does per write: decode, then encode
        started = time.perf_counter()
        for blob in blobs:
            orjson.dumps(orjson.loads(blob))
        return (time.perf_counter() - started) / len(blobs)

    return sum(map(len, blobs)) / len(blobs), best(once, repeats * 3)


def pass_writes(
    processor: Processors, pool: dict[str, Any], kpis: KpiTracker | None, last_day: int
) -> int:
    """Customers written by the daily pass over 30 silent days after the history.

    A write is a changed segment or churn level; with KPIs also a changed
    contribution.
    """
    writes = 0
    reviewer = processor(kpis)
    pool = orjson.loads(orjson.dumps(pool))  # each variant from the same states
    for day in range(last_day + 1, last_day + 31):
        for customer, state in pool.items():
            old = state.get("kc")
            result = reviewer.review(customer, state, day, None, MODELS["churn"])
            writes += bool(result.write or state.get("kc") is not old)
    return writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=600)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    events = simulated_events(args.customers, args.days)
    n = len(events)
    rules = RuleEngine(RulesConfig())

    def processor(kpis: KpiTracker | None) -> CustomerProcessor:
        return CustomerProcessor(rules=rules, scorer=ChurnScorer(), tracker=kpis)

    last_day = max(event["ts"] for _, event in events) // MS_PER_DAY
    MODELS["churn"], MODELS["spend"] = fitted_models(run(processor(None), events)[1], last_day)
    baseline, with_kpis = handle_seconds(processor, events, args.repeats)
    _, states, changes = run(processor(tracker()), events)
    _, plain_states, _ = run(processor(None), events)
    inside = tracker_seconds(processor, events, args.repeats)
    book_s, derive_s = book_seconds(
        changes, [state.get("kc") for state in states.values()], args.repeats
    )
    members_s, outputs = membership_seconds(changes, args.repeats)
    size_with, rt_with = roundtrip(states, args.repeats)
    size_without, rt_without = roundtrip(plain_states, args.repeats)
    writes_with = pass_writes(processor, states, tracker(), last_day)
    writes_without = pass_writes(processor, plain_states, None, last_day)
    # the CLV's share: never refreshed (infinite tolerance), and other tolerances
    writes_no_clv = pass_writes(processor, states, tracker(float("inf")), last_day)
    writes_by_tolerance = {
        t: pass_writes(processor, states, tracker(t), last_day) for t in (0.02, 0.10)
    }
    per = 1e6 / n
    print(f"events: {n:,}, customers: {args.customers}, days: {args.days} (best of {args.repeats})")
    print(f"handle(), baseline without KPIs: {baseline * per:6.2f} µs/event")
    print(f"handle(), with KPIs+experiments: {with_kpis * per:6.2f} µs/event "
          f"(+{(with_kpis - baseline) * per:.2f} µs, x{with_kpis / baseline:.3f})")  # fmt: skip
    each = book_s / max(1, len(changes)) * 1e6
    print(f"  of which inside the tracker:   {inside * per:6.2f} µs/event (timed directly)")
    print(f"KpiBook.apply: {book_s * per:6.2f} µs/event "
          f"({len(changes):,} contribution changes, {each:.2f} µs each)")  # fmt: skip
    print(f"segment-memberships records: {members_s * per:6.3f} µs/event "
          f"({outputs:,} outputs, {members_s / max(1, outputs) * 1e6:.2f} µs each)")  # fmt: skip
    print(f"deriving a partition's sums (per stored customer, on top of reading it): "
          f"{derive_s * 1e6:.2f} µs")  # fmt: skip
    print(f"daily pass, 30 silent days x {len(states)} customers: {writes_without:,} -> "
          f"{writes_with:,} state writes ({writes_no_clv:,} without refreshing CLVs; "
          + ", ".join(f"tolerance {t:.0%}: {w:,}" for t, w in writes_by_tolerance.items())
          + ")")  # fmt: skip
    print(f"state: {size_without:,.0f} -> {size_with:,.0f} bytes; orjson round trip "
          f"{rt_without * 1e6:.2f} -> {rt_with * 1e6:.2f} µs per write")  # fmt: skip


if __name__ == "__main__":
    main()
