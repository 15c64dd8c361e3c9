"""KPI contributions and per-partition sums (models.kpis)."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from models.churn_model import BTYDFit
from models.eventtime import MS_PER_DAY
from models.experiments import Experiment
from models.gamma_gamma import GammaGammaParams
from models.kpis import (
    ACTIVE,
    BOUGHT,
    CHURN_HIGH,
    LOG_DAYS,
    VIEWED,
    KpiBook,
    KpiTracker,
    Totals,
    merge_records,
    segment_kpis,
)

DAY = MS_PER_DAY
SEGMENTS = ["lifecycle.active", "lifecycle.at_risk", "value.mid", "value.high", "churn.high"]


def random_contribution(rng: random.Random, today: int) -> list[Any]:
    members = rng.sample(SEGMENTS, rng.randint(0, 3))
    log = [
        [today - rng.randint(0, 40), "value", rng.choice([None, "mid"]), rng.choice(["high", None])]
        for _ in range(rng.randint(0, 2))
    ]
    tallies = {}
    if rng.random() < 0.3:
        tallies["w"] = [rng.randint(0, 1), 1, rng.randint(0, 1), 1, 0, 12.5, 156.25, 0]
    clv = None if rng.random() < 0.3 else rng.uniform(0, 500)
    return [members, rng.randint(0, 127), rng.uniform(0, 300), clv, log, tallies]


def scratch(stored: dict[bytes, Any], floor: int) -> Totals:
    totals = Totals()
    for kc in stored.values():
        totals.add(kc, 1, floor)
    return totals


def assert_same(a: Totals, b: Totals) -> None:
    keys = {k for k, v in a.seg.items() if v[0]} | {k for k, v in b.seg.items() if v[0]}
    for key in keys:
        assert a.seg.get(key) == pytest.approx(b.seg.get(key)), key
    assert a.to_record(-10_000)["days"] == b.to_record(-10_000)["days"]
    assert a.xp.keys() == b.xp.keys()


@pytest.mark.parametrize("seed", range(8))
def test_sums_stay_equal_to_the_stored_contributions_across_passes(seed: int) -> None:
    """Events change customers (new ones appear, some are erased) while passes walk
    the partition a chunk at a time: the sums always equal a recount from scratch."""
    rng = random.Random(seed)
    today = 100
    book = KpiBook(today=lambda: today)
    stored: dict[bytes, Any] = {}

    def event() -> None:
        key = orjson.dumps(f"c{rng.randint(0, 80):03d}")
        old = stored.get(key)
        new = None if rng.random() < 0.05 else random_contribution(rng, today)
        if new is None:
            stored.pop(key, None)
        else:
            stored[key] = new
        book.apply(0, key, old, new)

    for _ in range(3):
        book.begin_pass(0)
        cursor = None
        while True:
            keys = sorted(k for k in stored if cursor is None or k > cursor)[:7]
            book.listed(0, keys)
            for key in keys:
                for _ in range(rng.randint(0, 3)):
                    event()  # events between the pass's reads, on any customer
                book.count(0, key, stored.get(key))
                cursor = key
            if len(keys) < 7:
                break
        book.end_pass(0)
        assert book.derived(0)
        assert_same(book.partitions[0].live, scratch(stored, book.floor()))
        for _ in range(20):
            event()
        assert_same(book.partitions[0].live, scratch(stored, book.floor()))


def test_an_aborted_pass_keeps_the_live_sums() -> None:
    book = KpiBook(today=lambda: 5)
    kc = [["value.mid"], ACTIVE, 10.0, None, [], {}]
    book.apply(1, b'"a"', None, kc)
    book.begin_pass(1)
    book.count(1, b'"a"', kc)
    book.abort_pass(1)
    assert not book.derived(1)
    assert book.partitions[1].live.seg["value.mid"][0] == 1
    assert book.record(1) is None  # not derived: nothing published
    book.drop(1)
    assert 1 not in book.partitions


def test_transitions_outside_the_window_are_not_counted() -> None:
    today = 40
    totals = Totals()
    log = [[today - 29, "value", "mid", "high"], [today - 30, "value", None, "mid"]]
    totals.add([["value.high"], 0, 0.0, None, log, {}], 1, today - LOG_DAYS + 1)
    kpis = segment_kpis(totals, "value.high", today)
    assert kpis["entered_30d"] == 1
    assert segment_kpis(totals, "value.mid", today)["exited_30d"] == 1
    assert segment_kpis(totals, "value.mid", today)["entered_30d"] == 0  # 30 days ago: out


def test_records_round_trip_and_merge_across_partitions() -> None:
    a, b = Totals(), Totals()
    a.add([["nps.promoter"], ACTIVE | 16, 50.0, 200.0, [[3, "nps", None, "promoter"]], {}], 1, 0)
    b.add([["nps.promoter"], 16, 0.0, None, [], {"w": [1, 1, 1, 0, 0, 0.0, 0.0, 0]}], 1, 0)
    merged = merge_records([orjson.loads(orjson.dumps(t.to_record(0))) for t in (a, b)])
    kpis = segment_kpis(merged, "nps.promoter", 3)
    assert kpis == {
        "customers": 2,
        "entered_30d": 1,
        "exited_30d": 0,
        "active_30d_share": 0.5,
        "revenue_30d": 50.0,
        "clv_365d_mean": 200.0,  # over the members with a CLV
        "nps": 100.0,
        "conversion_30d": None,  # nobody viewed a product
        "churn_high_share": 0.0,
    }
    assert merged.xp["w"]["holdout"][:2] == [1, 1]
    assert segment_kpis(merged, "nps.detractor", 3)["customers"] == 0


def feats(**values: Any) -> dict[str, Any]:
    base = {
        "events_30d": 0,
        "product_views_30d": 0,
        "orders_30d": 0,
        "revenue_30d": 0.0,
        "nps_category": None,
        "frequency": 0,
        "recency": 0,
        "T": None,
        "monetary_value": 0.0,
    }
    return {**base, **values}


def customer(**segments: str | None) -> dict[str, Any]:
    return {"seg": {t: {"current": s} for t, s in segments.items()}, "churn": {"level": "low"}}


def test_contribution_flags_and_replacement_by_identity() -> None:
    tracker = KpiTracker()
    state = customer(lifecycle="active", nps=None)
    f = feats(events_30d=2, product_views_30d=1, orders_30d=1, revenue_30d=20.0)
    tracker.evaluated("c1", state, f, 5 * DAY, [], [])
    kc = state["kc"]
    assert kc[0] == ["lifecycle.active", "churn.low"]
    assert kc[1] == ACTIVE | VIEWED | BOUGHT
    tracker.evaluated("c1", state, f, 6 * DAY, [], [])
    assert state["kc"] is kc  # nothing changed: not replaced, the sweep writes nothing
    state["churn"]["level"] = "high"
    tracker.evaluated("c1", state, f, 6 * DAY, [], [])
    assert state["kc"] is not kc and state["kc"][1] & CHURN_HIGH
    assert kc[1] == ACTIVE | VIEWED | BOUGHT  # the old one is intact (the delta needs it)


def test_a_skipped_browsing_evaluation_still_sets_activity_and_views() -> None:
    tracker = KpiTracker()
    state = customer(lifecycle="prospect")
    tracker.evaluated("c1", state, feats(), 0, [], [])
    old = state["kc"]
    tracker.applied(state, "browsing", {"ts": 1, "action": "product_view"})
    assert state["kc"][1] == ACTIVE | VIEWED and old[1] == 0
    same = state["kc"]
    tracker.applied(state, "browsing", {"ts": 2, "action": "page_view"})
    tracker.applied(state, "profiles", {"ts": 3})
    assert state["kc"] is same


def test_clv_is_refreshed_beyond_its_tolerance_only() -> None:
    spend = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    tracker = KpiTracker(purchases=BTYDFit(day=80), spend=spend, clv_tolerance=0.02)
    state = customer(value="mid")
    f = feats(frequency=3, recency=60, T=90, monetary_value=40.0)
    tracker.evaluated("c1", state, f, 90 * DAY, [], [])
    first = state["kc"]
    assert first[3] > 0
    tracker.evaluated("c1", state, {**f, "T": 91}, 91 * DAY, [], [])
    assert state["kc"] is first  # T + 1 day moves the CLV by < 2 %
    tracker.evaluated("c1", state, {**f, "T": 200}, 200 * DAY, [], [])
    assert state["kc"][3] < 0.9 * first[3]  # silent for months: refreshed


def test_clv_waits_for_both_fits_and_follows_new_models() -> None:
    """No CLV from parameters of another customer base (the BTYD defaults), nor
    before the spend model; a new model reaches the customer at their next
    evaluation, whatever the cache holds."""
    spend = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    tracker = KpiTracker()
    state = customer(value="mid")
    f = feats(frequency=3, recency=60, T=90, monetary_value=40.0)
    tracker.set_models(BTYDFit(), spend)  # the prior's BTYD: never fitted here
    tracker.evaluated("c1", state, f, 90 * DAY, [], [])
    assert state["kc"][3] is None
    tracker.set_models(BTYDFit(day=89), spend)
    tracker.evaluated("c1", state, f, 90 * DAY, [], [])
    before = state["kc"][3]
    assert before is not None and before > 0
    tracker.set_models(BTYDFit(day=89), GammaGammaParams(p=6.25, q=3.74, v=30.0))
    tracker.evaluated("c1", state, f, 90 * DAY, [], [])
    # a dearer spend model (v 15.44 -> 30: E[spend] x 150 / 135.44): refreshed at once
    assert state["kc"][3] == pytest.approx(before * 150 / 135.44)


def test_transitions_are_logged_and_old_ones_forgotten() -> None:
    tracker = KpiTracker()
    state = customer(value="high")
    change = {"segment_type": "value", "previous": "mid", "current": "high", "experiments": []}
    tracker.evaluated("c1", state, feats(), 10 * DAY, [change], [])
    churn = {"previous_level": None, "level": "low", "experiments": []}
    tracker.evaluated("c1", state, feats(), 50 * DAY, [], [churn])
    assert state["kc"][4] == [[50, "churn", None, "low"]]  # day 10 is gone (> LOG_DAYS)


def test_entering_an_experiment_segment_marks_the_event_and_counts_one_exposure() -> None:
    winback = Experiment("winback", "lifecycle", "at_risk", holdout=0.5, window_days=10)
    churners = Experiment("save", "churn", "high", holdout=0.5, window_days=10)
    tracker = KpiTracker(experiments=(winback, churners))
    state = customer(lifecycle="at_risk")
    state["churn"]["level"] = "high"
    change = {
        "segment_type": "lifecycle",
        "previous": "active",
        "current": "at_risk",
        "experiments": [],
    }
    risk = {"previous_level": "medium", "level": "high", "experiments": []}
    tracker.evaluated("c7", state, feats(), 3 * DAY, [change], [risk])
    assert change["experiments"] == [{"name": "winback", "arm": winback.arm("c7")}]
    assert risk["experiments"] == [{"name": "save", "arm": churners.arm("c7")}]
    assert set(state["xo"]) == {"winback", "save"}
    # A purchase in the window, then the daily evaluation at the window's end closes it.
    tracker.applied(state, "purchases", {"ts": 5 * DAY, "amount": 25.0})
    tracker.evaluated("c7", state, feats(), 13 * DAY, [], [])
    assert "xo" not in state
    tally = state["kc"][5]["winback"]
    assert tally[1:] == [1, 1, 1, 1, 25.0, 625.0, 1]  # churn still high at the end
