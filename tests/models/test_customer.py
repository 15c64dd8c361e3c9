"""The customer document (models/customer.py): creation, watermarks, privacy transitions.

The stored JSON must stay byte-for-byte what the worker wrote before the
document had an owner (existing stores and changelogs keep loading), so the
records are compared as orjson bytes where the layout matters.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from models import dedup, features
from models.customer import (
    CustomerState,
    already_applied,
    is_opted_out,
    mark_applied,
    mark_source_applied,
    new_state,
    opt_in,
    opt_out,
    opted_out_since,
    source_applied,
)

T0 = 1_700_000_000_000


def profiled() -> CustomerState:
    """A customer with something in every key an opt-out or erasure must drop."""
    state = new_state(born=T0)
    features.apply_event(
        state["f"],
        "purchases",
        {"event_id": "e1", "customer_id": "c1", "ts": T0, "amount": 20.0, "items": 1},
    )
    dedup.check(state["dedup"], "purchases", "e1", T0, window_ms=7 * 86_400_000)
    state["seg"]["value"] = {"current": "high", "previous": None, "since_ms": T0, "label": "High"}
    state["churn"] = {"level": "low", "score": 0.1, "seq": 1, "b": [0, 0, 19675]}
    state["seq"] = 3
    state["n"] = {"value": 1, "lifecycle": 2}
    state.update(eval_day=19675, t=T0, train_day=19675, train_ms=T0, browse_day=19675)
    state["model"] = "c0,c1"
    mark_applied(state, "purchases", 2, 41)
    mark_source_applied(state, "browsing", 0, 7)
    state["kc"] = [["value.high"], 1, 20.0, None, [], {}]
    state["xo"] = {"exp": [T0, T0 + 1, 0, 0, 0, 0.0]}
    return state


# -- new_state -------------------------------------------------------------------------
def test_a_new_state_is_the_layout_the_worker_always_wrote() -> None:
    legacy = {
        "f": features.new_state(),
        "dedup": dedup.new_dedup(),
        "seg": {},
        "churn": {},
        "seq": 0,
    }
    assert orjson.dumps(new_state()) == orjson.dumps(legacy)
    legacy["born"] = T0  # (processing set it right after creating the record)
    assert orjson.dumps(new_state(born=T0)) == orjson.dumps(legacy)


def test_new_states_share_nothing() -> None:
    a, b = new_state(), new_state()
    a["seg"]["value"] = {"current": "high"}
    a["f"]["d"]["1"] = [1]
    assert b["seg"] == {} and b["f"]["d"] == {}


def test_a_stored_document_round_trips_unchanged() -> None:
    state = profiled()
    raw = orjson.dumps(state)
    assert orjson.dumps(orjson.loads(raw)) == raw


# -- the applied-offset watermark --------------------------------------------------------
def test_nothing_is_applied_to_a_missing_or_new_customer() -> None:
    assert not already_applied(None, "purchases", 0, 0)
    assert not already_applied(new_state(), "purchases", 0, 0)


def test_the_watermark_covers_the_offset_and_older_ones_of_its_topic_and_partition() -> None:
    state = new_state()
    mark_applied(state, "purchases", 3, 41)
    assert [already_applied(state, "purchases", 3, o) for o in (0, 40, 41, 42)] == [
        True,
        True,
        True,
        False,
    ]
    assert not already_applied(state, "purchases", 2, 41)  # another partition
    assert not already_applied(state, "browsing", 3, 41)  # another topic


def test_the_watermark_is_kept_per_topic_and_moves_to_the_last_message() -> None:
    state = new_state()
    mark_applied(state, "purchases", 3, 41)
    mark_applied(state, "browsing", 3, 7)
    mark_applied(state, "purchases", 3, 42)
    assert state["off"] == {"purchases": [3, 42], "browsing": [3, 7]}
    assert already_applied(state, "purchases", 3, 42)
    assert orjson.dumps(state).endswith(b',"off":{"purchases":[3,42],"browsing":[3,7]}}')


def test_a_new_partition_replaces_the_watermark() -> None:
    # (the customer's topic moved partition: its offsets start over)
    state = new_state()
    mark_applied(state, "purchases", 3, 41)
    mark_applied(state, "purchases", 5, 2)
    assert state["off"]["purchases"] == [5, 2]
    assert not already_applied(state, "purchases", 3, 1)
    assert already_applied(state, "purchases", 5, 1)


def test_the_rerouted_watermark_is_per_source_partition_and_never_lowered() -> None:
    state = new_state()
    assert not source_applied(state, "purchases", 2, 0)
    assert not source_applied(None, "purchases", 2, 0)
    mark_source_applied(state, "purchases", 2, 41)
    mark_source_applied(state, "purchases", 1, 7)
    mark_source_applied(state, "purchases", 2, 40)  # a forward that overtook an earlier one
    assert state["rp"] == {"purchases": {"2": 41, "1": 7}}
    assert [source_applied(state, "purchases", 2, o) for o in (40, 41, 42)] == [True, True, False]
    assert source_applied(state, "purchases", 1, 7) and not source_applied(state, "browsing", 2, 1)
    assert not already_applied(state, "purchases", 2, 1)  # two watermarks, apart


# -- opt-out, opt-in, erase ----------------------------------------------------------------
def legacy_opt_out(state: dict[str, Any] | None, ts: int) -> dict[str, Any]:
    """The record the pipeline built inline for an opt-out, before models/customer.py."""
    opted: dict[str, Any] = {
        "f": features.new_state(),
        "dedup": dedup.new_dedup(),
        "seg": {},
        "churn": {},
        "seq": 0,
    }
    opted["opted_out"] = True
    opted["since_ms"] = ts
    opted["seq"] = (state or {}).get("seq", 0)
    return opted


def test_an_opt_out_keeps_only_the_flag_its_time_and_the_change_count() -> None:
    state = profiled()
    opted = opt_out(state, T0 + 5)
    assert orjson.dumps(opted) == orjson.dumps(legacy_opt_out(state, T0 + 5))
    assert opted == {**new_state(), "seq": 3, "opted_out": True, "since_ms": T0 + 5}
    dropped = set(state) - set(opted)
    assert dropped == {
        "born",
        "n",
        "eval_day",
        "t",
        "train_day",
        "train_ms",
        "browse_day",
        "model",
        "off",
        "rp",
        "kc",
        "xo",
    }
    assert opted["f"] == features.new_state() and opted["dedup"] == dedup.new_dedup()


def test_an_opt_out_leaves_the_old_state_as_it_was() -> None:
    # (the pipeline sends the segment exits and tombstones from it afterwards)
    state = profiled()
    before = copy.deepcopy(state)
    opt_out(state, T0 + 5)
    assert state == before


def test_an_opt_out_without_a_record_or_of_an_opted_out_one() -> None:
    assert orjson.dumps(opt_out(None, T0)) == orjson.dumps(legacy_opt_out(None, T0))
    assert opt_out(None, T0)["seq"] == 0
    again = opt_out(opt_out(profiled(), T0), T0 + 1)
    assert again["seq"] == 3 and again["since_ms"] == T0 + 1


def test_opted_out_flags() -> None:
    opted = opt_out(profiled(), T0 + 5)
    assert is_opted_out(opted) and opted_out_since(opted) == T0 + 5
    assert not is_opted_out(profiled()) and opted_out_since(profiled()) is None
    assert not is_opted_out(None) and opted_out_since(None) is None
    # a record flagged before since_ms was recorded
    old = {**new_state(), "opted_out": True}
    assert is_opted_out(old) and opted_out_since(old) is None


def test_an_opt_in_tombstones_an_opted_out_record_and_keeps_a_profile() -> None:
    assert opt_in(opt_out(profiled(), T0)) is None
    state = profiled()
    before = copy.deepcopy(state)
    assert opt_in(state) is state and state == before
    assert opt_in(None) is None
