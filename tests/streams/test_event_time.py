"""A customer's outcome depends on their own events only, not on when the sweep ran.

``CustomerProcessor.handle`` catches a customer up day by day before each
event, and ``review`` (the sweep) brings a silent customer up to a day the
same way. Whatever days the sweep happens to run on, and whether it reached a
customer before or after their next event, every output and the final state
must be the same as with no sweep at all.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from models.churn import ChurnScorer
from models.eventtime import MS_PER_DAY, day_of, parse_ts
from models.processing import CustomerProcessor
from models.rules import RuleEngine, RulesConfig
from schemas import validate
from streams.tools.simulator import Simulation

DAYS = 60


def history() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """customer -> their validated events in time order (a seeded simulation)."""
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for topic, event in Simulation(customers=12, days=DAYS, seed=5).events():
        raw = dict(event, ts=parse_ts(event["ts"]))
        valid = validate(topic, orjson.dumps(raw), now_ms=raw["ts"] + MS_PER_DAY)
        out.setdefault(event["customer_id"], []).append((topic, valid))
    return out


HISTORY = history()


def make_processor() -> CustomerProcessor:
    return CustomerProcessor(rules=RuleEngine(RulesConfig()), scorer=ChurnScorer())


def live_through(
    customer: str, events: list[tuple[str, dict[str, Any]]], sweeps: dict[int, bool]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], int | None]:
    """Every output of one customer, the document served at the end, their clock.

    ``sweeps`` maps a day to whether its sweep reaches the customer before
    (True) or after (False) their first event of that day; days not in it have
    no sweep. Like the pipeline, a sweep that changes nothing is not written
    back."""
    processor = make_processor()
    state: dict[str, Any] | None = None
    # Each output topic in its order (the two topics are not ordered together).
    changes: list[dict[str, Any]] = []
    churn: list[dict[str, Any]] = []

    def sweep(day: int) -> None:
        nonlocal state
        if state is None or not processor.due_for_review(state, day):
            return
        trial = copy.deepcopy(state)
        result = processor.review(customer, trial, day, None)
        if result.write:
            state = trial
            changes.extend(result.segment_changes)
            churn.extend(result.churn_events)

    last_day = day_of(events[-1][1]["ts"])
    swept: set[int] = set()
    for topic, event in events:
        day = day_of(event["ts"])
        for d in sorted(d for d in sweeps if d <= day and d not in swept):
            if d < day or sweeps[d]:
                sweep(d)
                swept.add(d)
        result = processor.handle(customer, state, topic, event, None)
        assert result.status == "new"
        state = result.state
        changes.extend(result.segment_changes)
        churn.extend(result.churn_events)
    for d in sorted(d for d in sweeps if d not in swept):
        sweep(d)
    sweep(max([last_day + 30, *sweeps]))  # the end of the history, for everyone alike
    assert state is not None
    # What users see: the outputs, the document served at the end, and the
    # customer's own clock (which a late event would be evaluated at).
    end_ms = (max([last_day + 30, *sweeps]) + 1) * MS_PER_DAY
    return changes, churn, processor.view(customer, state, end_ms), state.get("t")


@settings(max_examples=40, deadline=None)
@given(
    sweeps=st.dictionaries(st.integers(0, DAYS + 20), st.booleans(), max_size=40),
    customer=st.sampled_from(sorted(HISTORY)),
)
def test_the_sweep_days_change_nothing(sweeps: dict[int, bool], customer: str) -> None:
    events = HISTORY[customer]
    first_day = day_of(events[0][1]["ts"])
    days = {first_day + d: before for d, before in sweeps.items()}
    end = {max([day_of(events[-1][1]["ts"]) + 30, *days]): True}
    assert live_through(customer, events, days) == live_through(customer, events, end)


def test_a_silent_gap_is_evaluated_day_by_day() -> None:
    """A customer silent for weeks passes the days a daily timer would have
    shown them: the outputs of the catch-up carry the day they happened on."""
    processor = make_processor()
    t0 = 1_767_225_600_000  # 2026-01-01

    def purchase(order: str, ts: int) -> dict[str, Any]:
        raw = {"event_id": order, "customer_id": "c1", "ts": ts, "order_id": order,
               "amount": 40.0, "items": 1, "category": "books", "channel": "web"}  # fmt: skip
        return validate("purchases", orjson.dumps(raw), now_ms=ts)

    state = processor.handle("c1", None, "purchases", purchase("o1", t0), None).state
    later = t0 + 200 * MS_PER_DAY
    result = processor.handle("c1", state, "purchases", purchase("o2", later), None)
    lifecycle = [c for c in result.segment_changes if c["segment_type"] == "lifecycle"]
    # It lapsed on a day between the two purchases, then came back with the second.
    assert lifecycle[-1]["current"] == "reactivated"
    lapsed = [c for c in lifecycle if c["current"] == "lapsed"]
    assert lapsed and t0 < parse_ts(lapsed[0]["ts"]) < later
    assert parse_ts(lapsed[0]["ts"]) % MS_PER_DAY == 0  # at the start of that day
