"""The due day against the brute force: evaluating a silent customer only at their
due days gives exactly what evaluating them every day gives.

Histories come from the simulator (:mod:`streams.tools.persona_modes`) replayed
through the worker's code as the quality benchmark does
(:class:`streams.tools.quality._OnlineRun`: ``CustomerProcessor.handle`` per
event, the daily sweep at every midnight, the cluster learner publishing a
fitted :class:`SegmentAssigner`). At random moments (after an event, after a
sweep) a customer's state is copied; from each copy the test runs

* the **brute force**: ``catch_up`` day by day for :data:`HORIZON` days, and
* the **jumps**: ``catch_up`` only at each :func:`next_due_day` (with
  ``reviewed_through = due - 1``: one evaluation), then at the last day,

and asserts that both produce the same outputs (segment changes with their ids
and times, churn events, churn snapshots released, learner refresh samples) on
the same days and end in byte-identical states (KPI contribution, experiment
windows, pending snapshots, ordinals included). Since the jumps evaluate only at
due days, any change the brute force makes before a due day would show up as a
difference. The share of the brute force's evaluations the jumps skip is
printed (``pytest -s``) and asserted to stay above a floor.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from models.churn import ChurnScorer
from models.churn_model import BTYDFit, ChurnModel
from models.clustering import SegmentAssigner
from models.customer import CustomerState
from models.due import (
    MAX_WAIT_DAYS,
    Due,
    next_due,
    next_due_day,
    plan,
    shifted,
    window_expiry_days,
)
from models.eventtime import MS_PER_DAY, parse_ts
from models.experiments import Experiment
from models.features import read_features
from models.gamma_gamma import GammaGammaParams
from models.kpis import KpiTracker
from models.processing import CustomerProcessor, Result
from models.rules import RuleEngine, RulesConfig, parse_rules
from streams.tools.persona_modes import simulation
from streams.tools.quality import QualityConfig, _install, _OnlineRun

HORIZON = 400  # days of silence checked after every stopping point

# A user rule reading a duration and a 7-day window, held for 5 days: the rules
# are then probed day by day and 7-day expiries count.
USER_RULES = {
    "segments": [
        {
            "name": "quiet",
            "cases": [
                {"id": "gone", "when": "days_since_last_event > 45"},
                {"id": "quiet_week", "when": "events_7d == 0 and orders_30d >= 1"},
            ],
            "default": "busy",
            "min_dwell_days": 5,
        }
    ]
}


def copy(state: CustomerState) -> CustomerState:
    copied: CustomerState = orjson.loads(orjson.dumps(state))
    return copied


@dataclass
class Sample:
    kind: str  # "event" or "sweep": where the copy was taken
    customer_id: str
    state: CustomerState
    assigner: SegmentAssigner | None
    churn_params: Any


class CapturingRun(_OnlineRun):
    """The quality benchmark's replay, copying a random customer state now and then."""

    def __init__(
        self, config: QualityConfig, rng: random.Random, rate: float, processor: dict[str, Any]
    ):
        super().__init__(config)
        self.rate = rate  # share of accepted events after which the state is copied
        self.swept = -1  # the last midnight passed (a shuffled replay goes back and forth)
        for name, value in processor.items():  # the Runtime holds this same processor
            setattr(self.processor, name, value)
        self.rng = rng
        self.samples: list[Sample] = []

    def take(self, kind: str, cid: str) -> None:
        rt = self.rt
        self.samples.append(Sample(kind, cid, copy(self.states[cid]), rt.assigner, rt.churn_params))

    def handle(self, topic: str, event: dict[str, Any], ts: int) -> bool:
        accepted = super().handle(topic, event, ts)
        if accepted and self.rng.random() < self.rate:
            self.take("event", event["customer_id"])
        return accepted

    def midnight(self, day: int) -> None:
        # _OnlineRun.midnight, copying some states between the sweep and a new model
        if day <= self.swept:
            return
        self.swept = day
        rt, processor = self.rt, self.processor
        for cid, state in self.states.items():
            if processor.due_for_review(state, day, rt.assigner_signature()):
                self.record(cid, processor.review(cid, state, day, rt.assigner, rt.churn_params))
            if self.rng.random() < self.rate / 10:
                self.take("sweep", cid)
        self.flush(through=day * MS_PER_DAY)
        if self.host.advance():
            message = self.host.snapshot_message()
            _install(rt, message, self.config.hysteresis)
            self.published["snapshot"] = orjson.loads(orjson.dumps(message["snapshot"]))


def replay(
    mode: str,
    customers: int,
    days: int,
    seed: int,
    rate: float,
    shuffle_days: float = 0.0,
    **processor: Any,
) -> CapturingRun:
    """Replay a simulation, copying states at random; ``shuffle_days``: every event
    arrives up to that many days late (a shuffled backlog: out-of-order events)."""
    config = QualityConfig(mode=mode, customers=customers, days=days, learner={"warmup": 100})
    rng = random.Random(seed)
    run = CapturingRun(config, rng, rate, processor)
    events = list(simulation(mode, customers, days, seed).events())
    if shuffle_days:
        delayed = [(at_ms(e) + rng.random() * shuffle_days * MS_PER_DAY, t, e) for t, e in events]
        delayed.sort(key=lambda item: item[0])
        events = [(t, e) for _, t, e in delayed]
    run.replay(events)
    return run


def at_ms(event: dict[str, Any]) -> int:
    ts = event["ts"]
    return ts if type(ts) is int else parse_ts(ts)


def outputs(result: Result) -> bytes:
    return orjson.dumps(
        [result.segment_changes, result.churn_events, result.churn_labels, result.refresh]
    )


def changed(result: Result, kc_before: Any, state: CustomerState) -> bool:
    """Whether an evaluation changed anything but the churn score cache."""
    return bool(
        result.segment_changes
        or result.churn_events
        or result.churn_labels
        or result.tracked
        or result.refresh
        or state.get("kc") is not kc_before  # the tracker replaces it only on a change
    )


@dataclass
class Oracle:
    """Totals over every sample checked."""

    samples: int = 0
    days: int = 0
    evaluations: int = 0
    idle: int = 0  # evaluations at a due day that changed nothing
    due_seconds: float = 0.0  # time spent in next_due
    brute_seconds: float = 0.0  # time spent in the daily catch-up
    jump_seconds: float = 0.0  # time spent in the catch-up at due days (next_due aside)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    seen: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def skipped(self) -> float:
        return 1.0 - self.evaluations / self.days

    def check(self, processor: CustomerProcessor, sample: Sample, churn_params: Any) -> None:
        cid, assigner = sample.customer_id, sample.assigner
        start = sample.state["eval_day"]
        end = start + HORIZON
        brute = copy(sample.state)
        expected = []
        started = time.perf_counter()
        for day in range(start + 1, end + 1):
            kc = brute.get("kc")
            result = processor.catch_up(cid, brute, day, assigner, churn_params)
            if changed(result, kc, brute):
                expected.append((day, outputs(result)))
                self._count(result)
        self.brute_seconds += time.perf_counter() - started
        jumps = copy(sample.state)
        got = []
        evaluations = 0
        last: Due | None = None  # the previous plan, while it may be reused
        while True:
            started = time.perf_counter()
            last = plan(processor, cid, jumps, assigner, churn_params, reuse=last)
            due, reason = last.day, last.reason
            self.due_seconds += time.perf_counter() - started
            assert due is not None and due > jumps["eval_day"]
            if due > end:
                break
            assert due <= jumps["eval_day"] + MAX_WAIT_DAYS
            self.reasons[reason] += 1
            kc = jumps.get("kc")
            started = time.perf_counter()
            result = processor.catch_up(
                cid, jumps, due, assigner, churn_params, reviewed_through=due - 1
            )
            self.jump_seconds += time.perf_counter() - started
            evaluations += 1
            if changed(result, kc, jumps):
                got.append((due, outputs(result)))
            else:
                self.idle += 1
                self.reasons[f"idle {reason}"] += 1
            if result.segment_changes or result.churn_events or jumps.get("kc") is not kc:
                last = None  # only snapshots and refresh samples leave the plan valid
        if jumps["eval_day"] < end:
            processor.catch_up(cid, jumps, end, assigner, churn_params, reviewed_through=end - 1)
        assert [d for d, _ in got] == [d for d, _ in expected], cid
        assert got == expected, cid
        assert orjson.dumps(jumps, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
            brute, option=orjson.OPT_SORT_KEYS
        ), cid
        self.samples += 1
        self.days += HORIZON
        self.evaluations += evaluations

    def _count(self, result: Result) -> None:
        for change in result.segment_changes:
            self.seen[f"{change['segment_type']}:{change['current']}"] += 1
            self.seen[change["segment_type"]] += 1
        self.seen["churn"] += len(result.churn_events)
        self.seen["snapshot released"] += len(result.churn_labels)
        self.seen["refresh"] += len(result.refresh)

    def report(self, name: str) -> str:
        return (
            f"{name}: {self.samples} stopping points x {HORIZON} days: "
            f"{self.evaluations} evaluations instead of {self.days} "
            f"({self.skipped:.1%} skipped; {self.idle} of them changed nothing; "
            f"{self.due_seconds / max(1, self.evaluations) * 1e6:.0f} us per due day, "
            f"{self.brute_seconds / max(1, self.days) * 1e6:.0f} us per daily evaluation; "
            f"time {1 - (self.due_seconds + self.jump_seconds) / self.brute_seconds:.0%} saved); "
            f"due days set by {dict(self.reasons.most_common())}; "
            f"brute-force changes {dict(self.seen.most_common(12))}"
        )


def sample_kinds(samples: list[Sample]) -> collections.Counter[str]:
    kinds: collections.Counter[str] = collections.Counter()
    for s in samples:
        state = s.state
        kinds[s.kind] += 1
        lifecycle = (state["seg"].get("lifecycle") or {}).get("current")
        kinds[f"lifecycle {lifecycle}"] += 1
        if (state.get("churn") or {}).get("snap"):
            kinds["pending snapshot"] += 1
        if s.assigner is not None and s.assigner.ready:
            kinds["fitted assigner"] += 1
    return kinds


@pytest.fixture(scope="module")
def worker_defaults() -> CapturingRun:
    """Separated personas (a fifth of them lapse), the worker's default processor."""
    return replay("separated", 200, 120, seed=3, rate=0.006)


@pytest.fixture(scope="module")
def shuffled() -> CapturingRun:
    """Separated personas, every event up to 10 days late."""
    return replay("separated", 200, 120, seed=7, rate=0.004, shuffle_days=10.0)


@pytest.fixture(scope="module")
def everything() -> CapturingRun:
    """The simulator's default mix, with a duration user rule and a KPI tracker
    (experiments on at-risk and high-churn customers, CLV models)."""
    tracker = KpiTracker(
        experiments=(
            Experiment("winback", "lifecycle", "at_risk", holdout=0.5, window_days=10),
            Experiment("save", "churn", "high", holdout=0.5, window_days=20),
        ),
        purchases=BTYDFit(),
        spend=GammaGammaParams(p=6.25, q=3.74, v=15.44),
    )
    rules = RuleEngine(parse_rules(USER_RULES))
    return replay("default", 150, 150, seed=5, rate=0.001, tracker=tracker, rules=rules)


def test_jumping_to_due_days_equals_the_daily_catch_up(worker_defaults: CapturingRun) -> None:
    run = worker_defaults
    kinds = sample_kinds(run.samples)
    assert kinds["event"] > 50 and kinds["sweep"] > 5, kinds
    assert kinds["lifecycle new"] and kinds["lifecycle at_risk"] + kinds["lifecycle lapsed"], kinds
    assert kinds["pending snapshot"] > 50 and kinds["fitted assigner"] > 50, kinds
    oracle = Oracle()
    for sample in run.samples:
        oracle.check(run.processor, sample, sample.churn_params)
    print(oracle.report("worker defaults"))
    seen = oracle.seen
    # what the brute force did in these silences: every kind of timer fired
    assert seen["lifecycle:at_risk"] and seen["lifecycle:lapsed"] and seen["churn"], seen
    assert seen["refresh"] and seen["snapshot released"] and seen["value"], seen
    assert oracle.reasons["rules"] and oracle.reasons["churn"], oracle.reasons
    assert oracle.skipped > 0.65


def test_due_days_after_out_of_order_events(shuffled: CapturingRun) -> None:
    oracle = Oracle()
    for sample in shuffled.samples:
        oracle.check(shuffled.processor, sample, sample.churn_params)
    print(oracle.report("shuffled (events up to 10 days late)"))
    assert oracle.samples > 50 and oracle.seen["lifecycle"] and oracle.seen["churn"]
    assert oracle.skipped > 0.65


def test_due_days_with_user_rules_kpis_and_learned_churn_models(everything: CapturingRun) -> None:
    run = everything
    models = {
        "prior": None,
        # expected purchases and repeat purchases weigh in (a learned model)
        "learned": ChurnModel(
            weights={"low_expected_purchases": 1.2, "few_repeat_purchases": 0.8, "not_alive": 1.0},
            bias=-3.5,
        ),
        # a negative weight on a time-driven factor: no monotone score, daily probes
        "non-monotone": ChurnModel(weights={"inactivity": -1.0, "not_alive": 3.0}, bias=-2.0),
    }
    for name, params in models.items():
        oracle = Oracle()
        for sample in run.samples[::3] if name != "prior" else run.samples:
            oracle.check(run.processor, sample, params)
        print(oracle.report(f"user rules + KPIs, churn {name}"))
        assert oracle.seen["quiet"] and oracle.reasons["rules"], (oracle.seen, oracle.reasons)
        assert oracle.samples > 40 if name == "prior" else oracle.samples > 25
    assert oracle.seen["churn"]


def test_a_new_cluster_model_makes_everyone_due_at_once(worker_defaults: CapturingRun) -> None:
    run = worker_defaults
    snapshot = dict(run.published["snapshot"])
    snapshot["profiles"] = {f"{cid}x": p for cid, p in snapshot["profiles"].items()}
    snapshot["labels"] = {f"{cid}x": label for cid, label in snapshot["labels"].items()}
    renamed = SegmentAssigner.from_snapshot(snapshot)
    oracle = Oracle()
    for sample in run.samples[:40]:
        state = sample.state
        assert next_due_day(run.processor, sample.customer_id, state, renamed) == (
            state["eval_day"] + 1
        )
        oracle.check(run.processor, Sample("model", sample.customer_id, state, renamed, None), None)
    assert oracle.samples == 40


def test_never_evaluated_or_opted_out_customers_are_never_due() -> None:
    processor = CustomerProcessor(rules=RuleEngine(RulesConfig()), scorer=ChurnScorer())
    state = processor.handle(
        "c1", None, "profiles", {"event_id": "e", "ts": 0, "attributes": {"a": 1}}, None
    ).state
    assert state is not None
    assert next_due(processor, "c1", state, None) == (6, "snapshot")  # its first snapshot day
    assert next_due_day(processor, "c1", {**state, "opted_out": True}, None) is None
    del state["eval_day"]
    assert next_due_day(processor, "c1", state, None) is None


def test_a_single_purchase_customer_is_due_at_the_lifecycle_thresholds() -> None:
    processor = CustomerProcessor(rules=RuleEngine(RulesConfig()), scorer=ChurnScorer())
    event = {"event_id": "p", "ts": 1000, "amount": 20.0, "items": 1, "order_id": "o"}
    state = processor.handle("c1", None, "purchases", event, None).state
    assert state is not None
    dues = []
    for _ in range(60):
        due, reason = next_due(processor, "c1", state, None)
        assert due is not None
        dues.append((due, reason))
        processor.catch_up("c1", state, due, None, reviewed_through=due - 1)
        if due > 130:
            break
    # refresh samples weekly; lifecycle new -> active at 31, at_risk at 46, lapsed at 121
    assert (31, "rules") in dues and (46, "rules") in dues and (121, "rules") in dues
    assert all(b - a <= 7 for (a, _), (b, _) in itertools.pairwise(dues))


def test_shifted_features_are_the_features_read_later_between_window_expiries(
    worker_defaults: CapturingRun,
) -> None:
    for sample in worker_defaults.samples[:60]:
        state = sample.state
        day = state["eval_day"]
        expiry = (window_expiry_days(state["f"], day, seven=True) or [day + 200])[0]
        base = read_features(state["f"], (day + 1) * MS_PER_DAY)
        for later in range(day + 1, min(expiry, day + 200)):
            assert shifted(base, later - day - 1) == read_features(state["f"], later * MS_PER_DAY)


def test_a_dwell_ends_on_the_day_the_rules_compare_it_ends() -> None:
    from models.due import _first_day_reaching

    rng = random.Random(1)
    for _ in range(2000):
        since = rng.randrange(0, 400 * MS_PER_DAY)
        days = rng.choice([0.5, 1, 2.5, 7, 30, rng.uniform(0, 60)])
        d = _first_day_reaching(since, days)
        assert d * MS_PER_DAY - since >= days * MS_PER_DAY
        assert (d - 1) * MS_PER_DAY - since < days * MS_PER_DAY


def test_a_long_catch_up_in_one_call_jumps_and_equals_the_daily_loop(
    worker_defaults: CapturingRun, shuffled: CapturingRun, everything: CapturingRun
) -> None:
    """What a restart, a backlog or a customer back after months does: one
    ``catch_up`` over many days (``CustomerProcessor.jump_min_days``)."""
    jumped_seconds = daily_seconds = 0.0
    checked = 0
    for run in (worker_defaults, shuffled, everything):
        daily = dataclasses.replace(run.processor, jump_min_days=10**9)
        for sample in run.samples[::2]:
            day = sample.state["eval_day"]
            # (gap, the sweep's reviewed_through: days the catch-up must skip)
            for gap, reviewed in ((run.processor.jump_min_days, -1), (30, -1), (30, day + 9),
                                  (HORIZON, -1)):  # fmt: skip
                end = day + gap
                got, want = copy(sample.state), copy(sample.state)
                args = (sample.assigner, sample.churn_params, reviewed)
                started = time.perf_counter()
                jumped = run.processor.catch_up(sample.customer_id, got, end, *args)
                jumped_seconds += time.perf_counter() - started
                started = time.perf_counter()
                expected = daily.catch_up(sample.customer_id, want, end, *args)
                daily_seconds += time.perf_counter() - started
                assert outputs(jumped) == outputs(expected), (sample.customer_id, gap)
                assert jumped.tracked == expected.tracked
                assert orjson.dumps(got, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
                    want, option=orjson.OPT_SORT_KEYS
                ), (sample.customer_id, gap)
                checked += 1
    print(
        f"{checked} catch-ups: jumping took {jumped_seconds / daily_seconds:.0%} of the daily loop"
    )
    assert checked > 400
