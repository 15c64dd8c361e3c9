"""Tests of models.dedup: new / duplicate / late, the overflow floor, JSON round trips."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run from anywhere, installed or not
    sys.path.insert(0, str(ROOT))

from models.dedup import check, forget_all, id_count, new_dedup  # noqa: E402

DAY = 86_400_000
WEEK = 7 * DAY


def test_new_then_duplicate() -> None:
    mem = new_dedup()
    assert check(mem, "purchases", "a", 100 * DAY, window_ms=WEEK) == "new"
    assert check(mem, "purchases", "a", 100 * DAY, window_ms=WEEK) == "duplicate"
    assert check(mem, "purchases", "b", 100 * DAY, window_ms=WEEK) == "new"


def test_topics_are_independent() -> None:
    mem = new_dedup()
    assert check(mem, "purchases", "a", 100 * DAY, window_ms=WEEK) == "new"
    assert check(mem, "browsing", "a", 100 * DAY, window_ms=WEEK) == "new"
    # browsing's clock is its own: an old browsing event is not judged by purchases' clock
    assert check(mem, "support", "x", 10 * DAY, window_ms=WEEK) == "new"


def test_late_is_relative_to_the_topic_clock_before_the_event() -> None:
    mem = new_dedup()
    assert check(mem, "t", "a", 100 * DAY, window_ms=WEEK) == "new"
    assert check(mem, "t", "b", 93 * DAY, window_ms=WEEK) == "new"  # exactly the window
    assert check(mem, "t", "c", 93 * DAY - 1, window_ms=WEEK) == "late"
    assert check(mem, "t", "d", 120 * DAY, window_ms=WEEK) == "new"
    assert check(mem, "t", "b", 93 * DAY, window_ms=WEEK) == "late"  # now too old, even if known
    assert check(mem, "t", "c", 93 * DAY - 1, window_ms=WEEK) == "late"  # late ids are not kept


def test_out_of_order_within_the_window_is_new() -> None:
    mem = new_dedup()
    answers = [
        check(mem, "t", f"e{i}", ts, window_ms=WEEK)
        for i, ts in enumerate([10 * DAY, 8 * DAY, 12 * DAY, 6 * DAY])
    ]
    assert answers == ["new", "new", "new", "new"]
    assert check(mem, "t", "e1", 8 * DAY, window_ms=WEEK) == "duplicate"


def test_overflow_raises_the_floor() -> None:
    mem = new_dedup()
    for i in range(4):
        assert check(mem, "t", f"e{i}", i, window_ms=WEEK, max_ids=4) == "new"
    assert check(mem, "t", "e4", 4, window_ms=WEEK, max_ids=4) == "new"  # 5 > 4: drop ts 0
    assert mem["t"]["fl"] == 1
    assert check(mem, "t", "e0", 0, window_ms=WEEK, max_ids=4) == "late"  # forgotten: late
    assert check(mem, "t", "other", 0, window_ms=WEEK, max_ids=4) == "late"
    assert check(mem, "t", "e1", 1, window_ms=WEEK, max_ids=4) == "duplicate"
    assert id_count(mem) == 4


def test_overflow_drops_ties_together() -> None:
    mem = new_dedup()
    for i in range(3):
        check(mem, "t", f"same{i}", 5, window_ms=WEEK, max_ids=3)
    assert check(mem, "t", "later", 6, window_ms=WEEK, max_ids=3) == "new"
    # all three ts-5 ids went together, so none can come back as "new"
    assert [check(mem, "t", f"same{i}", 5, window_ms=WEEK, max_ids=3) for i in range(3)] == [
        "late"
    ] * 3
    assert mem["t"]["fl"] == 6


def test_overflow_of_identical_ts_drops_all_and_floor_moves_past_them() -> None:
    mem = new_dedup()
    for i in range(3):
        check(mem, "t", f"same{i}", 5, window_ms=WEEK, max_ids=2)
    assert mem["t"]["ids"] == {} and mem["t"]["fl"] == 6
    assert check(mem, "t", "same0", 5, window_ms=WEEK, max_ids=2) == "late"


def test_survives_orjson_round_trip() -> None:
    mem = new_dedup()
    for i in range(50):
        check(mem, "purchases", f"p{i}", i * 1000, window_ms=WEEK, max_ids=16)
    restored = orjson.loads(orjson.dumps(mem))
    assert restored == mem
    for i in range(50):
        assert check(restored, "purchases", f"p{i}", i * 1000, window_ms=WEEK, max_ids=16) == (
            check(mem, "purchases", f"p{i}", i * 1000, window_ms=WEEK, max_ids=16)
        )
    assert check(restored, "purchases", "p49", 49_000, window_ms=WEEK) == "duplicate"


def test_forget_all() -> None:
    mem = new_dedup()
    check(mem, "t", "a", 0, window_ms=WEEK)
    forget_all(mem)
    assert mem == {} and check(mem, "t", "a", 0, window_ms=WEEK) == "new"


def test_memory_is_bounded_by_window_and_max_ids() -> None:
    mem = new_dedup()
    for i in range(20_000):  # one event an hour for ~2.3 years
        assert check(mem, "browsing", f"b{i}", i * 3_600_000, window_ms=WEEK) == "new"
    assert id_count(mem) <= 7 * 24 + 7 * 24 // 8 + 1
    mem = new_dedup()
    for i in range(5_000):  # a burst: 5000 events in one minute
        assert check(mem, "browsing", f"b{i}", i * 10, window_ms=WEEK, max_ids=256) == "new"
    assert id_count(mem) <= 256
    assert len(orjson.dumps(mem)) < 256 * 40


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    max_ids=st.integers(1, 40),
    window=st.integers(1, 50),
)
def test_never_answers_new_twice_and_answers_match_a_model(
    seed: int, max_ids: int, window: int
) -> None:
    """Against a brute-force model: exactly-once, late rules, deterministic floor."""
    rng = random.Random(seed)
    mem = new_dedup()
    accepted: set[str] = set()
    hi: int | None = None
    for _ in range(300):
        if accepted and rng.random() < 0.3:
            eid = rng.choice(sorted(accepted))
            ts = int(eid.split(":")[1])
        else:
            ts = rng.randrange(0, 200)
            eid = f"{rng.randrange(10**9)}:{ts}"
        answer = check(mem, "t", eid, ts, window_ms=window, max_ids=max_ids)
        floor = mem["t"]["fl"]
        if hi is not None and ts < hi - window:
            assert answer == "late"
        elif answer == "late":
            assert floor is not None and ts < floor
        elif eid in accepted:
            assert answer == "duplicate"
        else:
            assert answer == "new"
        if answer == "new":
            accepted.add(eid)
            hi = ts if hi is None else max(hi, ts)
        assert len(mem["t"]["ids"]) <= max_ids
        assert orjson.loads(orjson.dumps(mem)) == mem
