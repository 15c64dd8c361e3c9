"""Workers keep within a bounded stream-time lead of the cluster model (streams.worker.model_pace).

Issue #17's reproduction through the broker measured a steady-state change rate
that depended on the machine's load: the worker handled day 110 with the
model of day 50, so the day-57 merge re-placed its customers on days 115-119.
These tests pin the three parts of the bound: the learner publishes every day
it closes (also without a change), a worker's runtime derives the bound from
the model it installs, and the event-time order holds back what lies past it.
"""

from __future__ import annotations

import math

import orjson

from models.eventtime import MS_PER_DAY
from models.ordering import EventTimeOrder
from streams.worker.learner import LearnerHost
from streams.worker.model_events import model_change_events, model_event_breaks
from streams.worker.model_pace import ModelPace
from tests.streams.test_cluster_pacing import host_of, runtime, samples

DAY = MS_PER_DAY


def always(topic: str, partition: int) -> bool:
    return True


def test_events_past_the_limit_wait_until_it_moves_on() -> None:
    order = EventTimeOrder(["purchases", "browsing"])
    for i, ts in enumerate([DAY, 2 * DAY - 1, 2 * DAY, 3 * DAY]):
        order.hold("purchases", 0, ts=ts, offset=i, item=ts)
    order.limit = 2 * DAY
    assert order.release(always) == [DAY, 2 * DAY - 1]  # all caught up, yet 2 wait
    assert order.watermark(0, always) == 2 * DAY  # the sweep may not pass the limit
    assert order.release(always) == []
    order.limit = math.inf
    assert order.release(always) == [2 * DAY, 3 * DAY]


def test_the_memory_bound_wins_over_the_limit() -> None:
    order = EventTimeOrder(["purchases"], max_held=1, limit=0)
    order.hold("purchases", 0, ts=5, offset=0, item="a")
    order.hold("purchases", 0, ts=6, offset=1, item="b")
    assert order.release(always) == ["a"] and order.forced == 1


def test_a_worker_paces_itself_on_the_installed_model() -> None:
    host = host_of(runtime())
    host.learn(samples(0), through={"0": DAY, "1": DAY})
    assert host.advance()
    message = orjson.loads(orjson.dumps(host.snapshot_message()))
    rt = runtime()  # (default lead: two days)
    assert rt.model_pace.limit(now=0.0) == math.inf  # no model: nothing to wait for
    assert rt.install_model(message)
    assert rt.model_pace.as_of_ms == DAY
    assert rt.model_pace.advanced_at is not None
    assert rt.model_pace.limit(rt.model_pace.advanced_at) == 3 * DAY
    off = runtime(cluster_model_lead_days=0)
    assert off.install_model(message)
    assert off.model_pace.limit(off.model_pace.advanced_at or 0.0) == math.inf


def test_the_learner_publishes_each_day_it_closes_even_without_a_change() -> None:
    host = host_of(runtime())
    host.learn(samples(0), through={"0": DAY, "1": DAY})
    assert host.advance() and host.moved_on()
    host.snapshot_message()
    assert not host.moved_on()  # published as of day 1
    host.learn([], through={"0": 2 * DAY, "1": 2 * DAY})  # no sample: nothing to refit
    assert not host.advance()
    assert host.moved_on()  # but the model is as of day 2 now: workers may go on
    assert host.snapshot_message()["snapshot"]["as_of_ms"] == 2 * DAY


def test_the_bound_is_lifted_while_the_learner_does_not_move() -> None:
    pace = ModelPace(lead_ms=2 * DAY, patience_s=60.0)
    pace.heard(10 * DAY, now=0.0)
    assert pace.limit(now=59.0) == 12 * DAY
    assert pace.limit(now=61.0) == math.inf  # a frozen or lost learner blocks nobody
    pace.heard(10 * DAY, now=70.0)  # the same model read again is no progress
    assert pace.limit(now=71.0) == math.inf
    pace.heard(11 * DAY, now=80.0)
    assert pace.limit(now=81.0) == 13 * DAY


def test_warming_up_the_learner_publishes_its_days_and_workers_pace_on_them() -> None:
    host = LearnerHost(runtime())  # the first clusters after two weeks of history
    host.learn(samples(0), through={"0": DAY, "1": DAY})
    assert not host.advance()  # no model yet
    assert host.moved_on()
    message = orjson.loads(orjson.dumps(host.snapshot_message()))
    assert message["snapshot"]["as_of_ms"] == DAY and not message["snapshot"]["centroids"]
    rt = runtime()
    assert rt.install_model(message)
    assert rt.assigner is None  # nobody is placed by a model without clusters
    assert rt.model_pace.as_of_ms == DAY  # but events of day 3 wait for day 2
    restored = LearnerHost(rt).ensure_learner()  # and a learner moving resumes from it
    assert restored.closed_through == DAY


def test_model_events_follow_their_own_rule_across_a_learner_restart() -> None:
    """An init of two clusters is two events from null with one seq: not a customer
    chain, yet followable; a restart that announces again breaks nothing, a lost
    announcement does."""
    snapshot = {
        "version": 9,
        "as_of_ms": 20 * DAY,
        "labels": {"c0": "frequent buyers", "c2": "lapsing", "c3": "promoters"},
        "events": [
            {"kind": "init", "k": 3, "ids": ["c0", "c1", "c2"], "version": 1},
            {"kind": "split", "from": "c0", "into": ["c0", "c3"], "version": 8},
            {"kind": "merge", "from": ["c2", "c1"], "into": "c2", "version": 9},
            {"kind": "merge", "from": ["c3", "c2"], "into": "c3", "version": 9},
        ],
    }
    first = model_change_events(snapshot, since_version=None)
    # the learner moved after announcing version 9 but before its snapshot: the next
    # owner resumes from version 7's snapshot and announces versions 8 and 9 again
    again = model_change_events(snapshot, since_version=7)
    assert model_event_breaks(first + again) == []
    assert [e["seq"] for e in first[:3]] == [1, 1, 1]  # (three "chain starts" in one seq)
    lost_split = [e for e in first if e["model_change"]["kind"] != "split"]
    assert model_event_breaks(lost_split) == ["seq 9: merge into c3, which is not live"]


def test_privacy_requests_of_a_caught_up_partition_do_not_wait_for_the_model() -> None:
    """A quiet stream with a gap of days (events on days 0-2, an erasure on day 5)
    never gets the model that would let the erasure through: the learner closes a
    day after an event of the next one. It used to wait the full patience (60 s)."""
    topics = ["purchases", "privacy", "privacy@1"]
    order = EventTimeOrder(topics, limit=2 * DAY, unpaced=frozenset({"privacy", "privacy@1"}))
    order.hold("purchases", 0, ts=DAY, offset=0, item="purchase 1")
    order.hold("purchases", 0, ts=2 * DAY, offset=1, item="purchase 2")
    order.hold("privacy", 0, ts=5 * DAY + 2, offset=0, item="opt-in")
    order.hold("privacy@1", 0, ts=5 * DAY + 1, offset=0, item="erase (rerouted)")
    backlog = order.release(lambda topic, partition: topic != "purchases")
    assert backlog == ["purchase 1"]  # a topic still behind: the order holds
    assert order.release(always) == ["erase (rerouted)", "opt-in"]  # in event-time order
    assert order.release(always) == []  # the purchase at the limit still waits
    order.limit = math.inf
    assert order.release(always) == ["purchase 2"]
