"""Tests of models.dedup: new / duplicate / late, the overflow floor, JSON round trips."""

from __future__ import annotations

import base64
import hashlib
import random
import sys
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run from anywhere, installed or not
    sys.path.insert(0, str(ROOT))

from models.dedup import (  # noqa: E402
    check,
    decode_times,
    encode_times,
    forget_all,
    id_count,
    id_key,
    new_dedup,
)

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
    assert id_count(mem) == 0 and mem["t"]["fl"] == 6
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
        assert id_count(mem) <= max_ids
        assert orjson.loads(orjson.dumps(mem)) == mem


# ----------------------------------------------------------------------------- packed format 2


def _v1_check(mem: dict, topic: str, eid: str, ts: int, window: int, max_ids: int) -> str:
    """The format-1 algorithm (dict of hex digests), kept as the reference."""
    entry = mem.setdefault(topic, {"hi": ts, "fl": None, "sw": ts, "ids": {}})
    hi = entry["hi"]
    if ts < hi - window or (entry["fl"] is not None and ts < entry["fl"]):
        return "late"
    ids = entry["ids"]
    key = hashlib.blake2b(eid.encode(), digest_size=8).hexdigest()
    if key in ids:
        return "duplicate"
    ids[key] = ts

    def sweep() -> None:
        for k in [k for k, t in ids.items() if t < entry["hi"] - window]:
            del ids[k]
        entry["sw"] = entry["hi"]

    if ts > hi:
        entry["hi"] = ts
        if ts - entry["sw"] >= window >> 3:
            sweep()
    if len(ids) > max_ids:
        sweep()
        if len(ids) > max_ids:
            ordered = sorted(ids.items(), key=lambda item: item[1])
            drop = max(1, len(ordered) - max_ids + max_ids // 16)
            cut = ordered[drop - 1][1]
            while drop < len(ordered) and ordered[drop][1] == cut:
                drop += 1
            for k, _t in ordered[:drop]:
                del ids[k]
            floor = ordered[drop][1] if drop < len(ordered) else cut + 1
            if entry["fl"] is None or floor > entry["fl"]:
                entry["fl"] = floor
    return "new"


def _remembered(entry: dict) -> list[tuple[str, int]]:
    """(key, ts) pairs of either format, keys as format-2 keys."""
    if "ids" in entry:
        pairs = [(bytes.fromhex(k[:12]), t) for k, t in entry["ids"].items()]
        return sorted((base64.b64encode(k).decode(), t) for k, t in pairs)
    times = [entry["b"] + t for t in decode_times(entry["t"], entry["w"])] + [
        entry["b"] + t for t in entry["p"]
    ]
    keys = [entry["h"][i : i + 8] for i in range(0, len(entry["h"]), 8)]
    return sorted(zip(keys, times, strict=True))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    max_ids=st.sampled_from([1, 3, 16, 64, 1024]),
    window=st.sampled_from([1, 50, WEEK, 60 * DAY]),
    scale=st.sampled_from([1, 1000, DAY // 3]),
    migrate_at=st.one_of(st.none(), st.integers(0, 300)),
)
def test_same_answers_and_memory_as_format_1(
    seed: int, max_ids: int, window: int, scale: int, migrate_at: int | None
) -> None:
    """Differential against the format-1 algorithm: answers, hi/fl/sw, (key, ts) set.

    Mid-stream the format-1 memory may be handed to ``check`` (migration on first
    touch); re-sent ids sometimes carry another ts; rare jumps force a re-base.
    """
    rng = random.Random(seed)
    ref: dict = {}
    mem: dict = {}
    sent: list[tuple[str, int]] = []
    clock = rng.randrange(-(10**6), 10**13)
    for step in range(300):
        if step == migrate_at:
            mem = orjson.loads(orjson.dumps(ref))
        if sent and rng.random() < 0.25:
            eid, ts = rng.choice(sent)
            if rng.random() < 0.2:
                ts += rng.randrange(-3, 4) * scale
        else:
            clock += rng.choice([0, 1, 2, -1, -3, 5, 100, -100]) * scale
            if rng.random() < 0.01:
                clock += 2**33
            ts = clock + rng.randrange(-3, 2) * scale
            eid = f"{rng.randrange(10**12)}"
            sent.append((eid, ts))
        topic = rng.choice(["a", "b"])
        expected = _v1_check(ref, topic, eid, ts, window, max_ids)
        if migrate_at is not None and step < migrate_at:
            continue
        assert check(mem, topic, eid, ts, window_ms=window, max_ids=max_ids) == expected
        for name, entry in mem.items():
            if entry.get("v") == 2:
                old = ref[name]
                assert [entry[k] for k in ("hi", "fl", "sw")] == [
                    old[k] for k in ("hi", "fl", "sw")
                ]
                assert _remembered(entry) == _remembered(old)
        if rng.random() < 0.3:
            mem = orjson.loads(orjson.dumps(mem))


def test_format_1_memory_is_migrated_on_first_touch() -> None:
    def digest(eid: str) -> str:
        return hashlib.blake2b(eid.encode(), digest_size=8).hexdigest()

    base = 100 * DAY
    ids = {digest(f"old{i}"): base + i * 1000 for i in range(10)}
    mem = {
        "t": {"hi": base + 9000, "fl": base + 500, "sw": base, "ids": ids},
        "u": {"hi": base, "fl": None, "sw": base, "ids": {digest("x"): base}},
    }
    mem = orjson.loads(orjson.dumps(mem))  # as stored in the table
    assert id_count(mem) == 11
    assert check(mem, "t", "old3", base + 3000, window_ms=WEEK) == "duplicate"
    assert mem["t"]["v"] == 2 and "ids" not in mem["t"] and mem["t"]["fl"] == base + 500
    assert "ids" in mem["u"]  # untouched topics stay as they are until used
    assert check(mem, "t", "old0", base, window_ms=WEEK) == "late"  # below the floor
    assert check(mem, "t", "fresh", base + 9500, window_ms=WEEK) == "new"
    assert check(mem, "u", "x", base, window_ms=WEEK) == "duplicate"
    assert id_count(mem) == 12
    assert orjson.loads(orjson.dumps(mem)) == mem


def test_packed_memory_is_about_13_bytes_per_id() -> None:
    mem = new_dedup()
    for i in range(1000):
        check(mem, "browsing", f"{i:016x}-browse", 100 * DAY + i * 600_000, window_ms=WEEK)
    n = id_count(mem)
    assert n == 1000
    per_id = len(orjson.dumps(mem)) / n
    assert per_id <= 14, per_id
    assert mem["browsing"]["w"] == 4


def test_wide_spans_negative_times_and_window_changes_stay_exact() -> None:
    mem = new_dedup()
    window = 90 * DAY  # ids spread over more than 2**32 ms: 6-byte offsets
    for i in range(200):
        assert check(mem, "t", f"w{i}", -5 * DAY + i * DAY // 2, window_ms=window) == "new"
    assert mem["t"]["w"] == 6
    for i in range(200):
        expected = "late" if -5 * DAY + i * DAY // 2 < mem["t"]["hi"] - window else "duplicate"
        assert check(mem, "t", f"w{i}", -5 * DAY + i * DAY // 2, window_ms=window) == expected
    restored = orjson.loads(orjson.dumps(mem))
    assert check(restored, "t", "w199", -5 * DAY + 199 * DAY // 2, window_ms=window) == "duplicate"


def test_a_key_straddling_two_records_is_not_a_match() -> None:
    mem = new_dedup()
    assert check(mem, "t", "a", 10, window_ms=100) == "new"
    key = id_key("target")
    entry = mem["t"]
    # two fake records whose concatenation contains the key off the 8-char grid
    entry["h"] = "AAAA" + key + "AAAA"
    entry["b"], entry["w"], entry["t"] = encode_times([10, 10])
    entry["p"] = []
    assert check(mem, "t", "target", 10, window_ms=100) == "new"
    assert check(mem, "t", "target", 10, window_ms=100) == "duplicate"


def test_keys_are_collision_free_on_distinct_ids_in_practice() -> None:
    rng = random.Random(5)
    ids = {f"{rng.getrandbits(64):016x}" for _ in range(100_000)}
    ids |= {f"evt-{i}" for i in range(100_000)}
    assert len({id_key(eid) for eid in ids}) == len(ids)
    mem = new_dedup()
    answers = [
        check(mem, "browsing", eid, 100 * DAY + i, window_ms=WEEK)
        for i, eid in enumerate(sorted(ids)[:20_000])
    ]
    assert answers == ["new"] * len(answers)
