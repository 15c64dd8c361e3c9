"""The customer document: one JSON value per customer, and its transitions.

Everything the worker knows about a customer lives in one JSON object, the
value of the ``customers`` table (key: customer id), serialised once with
orjson and written once per accepted event, so features, dedup memory,
segments, churn level, output ordinals and the offsets of the messages applied
always agree, also after a crash. :class:`CustomerState` is its layout, key by
key, with what each holds and who writes it; this module is the single
description of it (``docs/ARCHITECTURE.md``, "Per-customer state").

The keys are short because the document is serialised on every event; they
are stored as they are, so they must never be renamed (existing stores and
changelogs must keep loading). At run time a state is a plain ``dict``: the
types cost nothing on the hot path.

What happens to the document here, and nowhere else:

* :func:`new_state` creates it (the first accepted event of a customer);
* :func:`already_applied` / :func:`mark_applied` keep the watermark of the
  messages applied per input topic (``"off"``), :func:`source_applied` /
  :func:`mark_source_applied` the one of rerouted messages per source
  topic-partition (``"rp"``);
* :func:`opt_out`, :func:`opt_in` and :data:`ERASED` are the privacy
  transitions: what the table holds for the customer afterwards.

Examples
--------
>>> state = new_state(born=1_700_000_000_000)
>>> sorted(state)
['born', 'churn', 'dedup', 'f', 'seg', 'seq']
>>> mark_applied(state, "purchases", 3, 41)
>>> already_applied(state, "purchases", 3, 40), already_applied(state, "purchases", 3, 42)
(True, False)
>>> opted = opt_out(state, 1_700_000_100_000)
>>> opted["opted_out"], opted["since_ms"], "off" in opted, "born" in opted
(True, 1700000100000, False, False)
>>> opt_in(opted) is None
True
"""

from __future__ import annotations

from typing import Any, Required, TypedDict

from models import dedup, features

__all__ = [
    "ERASED",
    "ChurnState",
    "CustomerState",
    "SegmentEntry",
    "already_applied",
    "is_opted_out",
    "mark_applied",
    "mark_source_applied",
    "new_state",
    "opt_in",
    "opt_out",
    "opted_out_since",
    "source_applied",
]


class SegmentEntry(TypedDict, total=False):
    """The customer's place in one segment type (``state["seg"][segment_type]``).

    Written by ``models.processing.CustomerProcessor`` whenever the segment
    of the type changes (all four keys at once; records written before
    ``previous`` existed lack it).
    """

    current: str | None  # the segment id, None: in no segment of the type
    previous: str | None  # the segment before the latest change
    since_ms: int  # evaluation time of the latest change (epoch ms)
    label: str  # the segment's human-readable label at that change


class ChurnState(TypedDict, total=False):
    """The customer's churn risk (``state["churn"]``); ``{}`` until first scored.

    Written by ``models.processing.CustomerProcessor.churn_step`` (every key
    but ``snap``) and :class:`models.churn_outcomes.ChurnTracking` (``snap``).
    """

    level: str | None  # last emitted level (low | medium | high): moves with hysteresis
    score: float  # score of the latest evaluation
    since_ms: int  # evaluation time of the latest level change
    reasons: list[str]  # why the customer is at this level (words of that change)
    seq: int  # ordinal of the latest level change (part of the churn-risk event id)
    b: list[int]  # [frequency, recency, first purchase day]: what the sweep sums (BTYD)
    snap: list[list[Any]]  # snapshots waiting for their outcome (models.churn_outcomes)


class CustomerState(TypedDict, total=False):
    """The ``customers`` table value of one customer (see the module docstring).

    ``f``, ``dedup``, ``seg``, ``churn`` and ``seq`` are in every record
    (:func:`new_state`); every other key is written when first needed.
    An opted-out customer's record is :func:`opt_out`'s: empty but for
    ``opted_out``, ``since_ms`` and ``seq``.
    """

    # models.features state (layout in that module); models.features.apply_event
    # via models.processing.CustomerProcessor.handle, per accepted event.
    f: Required[dict[str, Any]]
    # models.dedup memory of recent event ids per topic; models.dedup.check, per event.
    dedup: Required[dict[str, Any]]
    # {segment type: SegmentEntry}; models.processing (evaluations, opt-out leaves).
    seg: Required[dict[str, SegmentEntry]]
    # ChurnState; models.processing.churn_step and models.churn_outcomes.
    churn: Required[ChurnState]
    # Number of segment changes sent so far (each segment-changes event's "seq");
    # models.processing. Kept by an opt-out (opt_out).
    seq: Required[int]
    # {segment type: ordinal of its latest change} (part of the change's event id);
    # models.processing.
    n: dict[str, int]
    # Event time (epoch ms) of the event that created this record: a profile that
    # comes back after an erasure or opt-out gets new output ids; new_state.
    born: int
    # Last day (epoch day) the customer was evaluated up to; models.processing
    # (handle, catch_up) and the offline replay of streams.tools.evaluation.
    eval_day: int
    # The customer's own clock (epoch ms): their latest event, or the latest
    # evaluation that changed a segment or churn level; models.processing.
    t: int
    # Epoch day of the customer's latest learner sample from an event;
    # models.processing.CustomerProcessor.handle.
    train_day: int
    # Time (epoch ms) of the customer's latest learner sample (event or weekly
    # refresh); models.processing.
    train_ms: int
    # Epoch day whose first browsing event was evaluated (later browsing events of
    # that day may skip the evaluation); models.processing.
    browse_day: int
    # Signature of the cluster model the customer was last placed by (its sorted
    # cluster ids, models.processing.assigner_signature); models.processing.
    model: str
    # Applied-offset watermark {input topic: [partition, offset of the last message
    # applied]}; mark_applied, from streams.worker.pipeline.
    off: dict[str, list[int]]
    # Watermark of rerouted messages {source topic: {source partition (as a string):
    # source offset of the last one applied}}; mark_source_applied, from
    # streams.worker.pipeline (streams.worker.repartition).
    rp: dict[str, dict[str, int]]
    # KPI contribution [members, flags, revenue_30d, clv, transitions, experiments]
    # (layout in models.kpis); models.kpis.KpiTracker, replaced, never mutated.
    kc: list[Any]
    # Open experiment outcome windows {experiment name: [entry_ms, end_ms, arm,
    # active, purchased, revenue]} (models.experiments); models.kpis.KpiTracker.
    # Absent when none is open.
    xo: dict[str, list[Any]]
    # True in an opted-out customer's record (opt_out); absent otherwise.
    opted_out: bool
    # Time (epoch ms) of the opt-out request (opt_out); only with opted_out.
    since_ms: int


def new_state(born: int | None = None) -> CustomerState:
    """An empty customer: no features, no segments, nothing remembered.

    Parameters
    ----------
    born
        The event time of the event that creates the record (``"born"``);
        ``None`` leaves the key out (a record that is not a profile of its own,
        such as :func:`opt_out`'s).

    Examples
    --------
    >>> state = new_state()
    >>> list(state), state["seg"], state["churn"], state["seq"]
    (['f', 'dedup', 'seg', 'churn', 'seq'], {}, {}, 0)
    >>> new_state(born=5)["born"]
    5
    """
    state: CustomerState = {
        "f": features.new_state(),
        "dedup": dedup.new_dedup(),
        "seg": {},
        "churn": {},
        "seq": 0,
    }
    if born is not None:
        state["born"] = born
    return state


def already_applied(state: CustomerState | None, topic: str, partition: int, offset: int) -> bool:
    """Whether the message at ``offset`` of ``topic``/``partition`` is already in ``state``.

    All of a customer's messages of one topic are on one partition (keyed by
    customer id), in offset order, so the last applied offset tells exactly
    which re-delivered messages (after a crash, before the offsets were
    committed) the state already holds, however old their event time is.

    Examples
    --------
    >>> state = new_state()
    >>> mark_applied(state, "purchases", 3, 41)
    >>> already_applied(state, "purchases", 3, 41), already_applied(state, "purchases", 3, 42)
    (True, False)
    >>> already_applied(state, "browsing", 3, 7), already_applied(None, "purchases", 3, 1)
    (False, False)
    >>> already_applied(state, "purchases", 4, 1)  # another partition (after a resize)
    False
    """
    if state is None:
        return False
    seen = state.get("off", {}).get(topic)
    return seen is not None and seen[0] == partition and offset <= seen[1]


def mark_applied(state: CustomerState, topic: str, partition: int, offset: int) -> None:
    """Record that ``state`` holds the message at ``offset`` (see :func:`already_applied`).

    Examples
    --------
    >>> state = new_state()
    >>> mark_applied(state, "purchases", 3, 41)
    >>> state["off"]
    {'purchases': [3, 41]}
    """
    state.setdefault("off", {})[topic] = [partition, offset]


def source_applied(
    state: CustomerState | None, topic: str, source_partition: int, source_offset: int
) -> bool:
    """Whether a rerouted message of the logical ``topic``, first produced at
    ``source_offset`` of ``source_partition``, is already in ``state``, by the
    customer's watermark of that source topic-partition (``streams.worker.repartition``).

    Examples
    --------
    >>> state = new_state()
    >>> mark_source_applied(state, "purchases", 2, 41)
    >>> [source_applied(state, "purchases", 2, offset) for offset in (40, 41, 42)]
    [True, True, False]
    >>> source_applied(state, "purchases", 1, 7)  # another source partition
    False
    >>> state["rp"]
    {'purchases': {'2': 41}}
    """
    if state is None:
        return False
    seen = state.get("rp", {}).get(topic, {}).get(str(source_partition))
    return seen is not None and source_offset <= seen


def mark_source_applied(
    state: CustomerState, topic: str, source_partition: int, source_offset: int
) -> None:
    """Record that ``state`` holds the rerouted message from ``source_offset`` of
    ``source_partition`` (never lowers the watermark: a forward that overtook an
    earlier one leaves it where it is).

    Examples
    --------
    >>> state = new_state()
    >>> mark_source_applied(state, "purchases", 2, 41)
    >>> mark_source_applied(state, "purchases", 2, 40)
    >>> state["rp"]
    {'purchases': {'2': 41}}
    """
    partitions = state.setdefault("rp", {}).setdefault(topic, {})
    key = str(source_partition)
    if source_offset > partitions.get(key, -1):
        partitions[key] = source_offset


def is_opted_out(state: CustomerState | None) -> bool:
    """Whether ``state`` is an opted-out customer's record (:func:`opt_out`).

    Examples
    --------
    >>> is_opted_out(opt_out(None, 7)), is_opted_out(new_state()), is_opted_out(None)
    (True, False, False)
    """
    return state is not None and bool(state.get("opted_out"))


def opted_out_since(state: CustomerState | None) -> int | None:
    """The time of the opt-out that made ``state`` (``None``: not opted out).

    Examples
    --------
    >>> opted_out_since(opt_out(None, 7)), opted_out_since(new_state())
    (7, None)
    """
    return state.get("since_ms") if state is not None and state.get("opted_out") else None


def opt_out(state: CustomerState | None, ts_ms: int) -> CustomerState:
    """The record of a customer who opted out at ``ts_ms``: what the table keeps.

    Features, dedup memory, segments, churn level and snapshots, KPI
    contribution, experiment windows, watermarks and ``born`` are dropped; the
    record is an empty one (:func:`new_state`) flagged ``opted_out`` since
    ``ts_ms``, which keeps only the count of segment changes sent (``seq``;
    0 for a customer without a record). The caller sends the segment exits and
    the audience tombstones before (the old state names them).

    Examples
    --------
    >>> state = new_state(born=1)
    >>> state["seq"], state["t"], state["seg"]["value"] = 4, 9, {"current": "high"}
    >>> opt_out(state, 10) == {**new_state(), "seq": 4, "opted_out": True, "since_ms": 10}
    True
    >>> list(opt_out(state, 10))  # (the key order of the stored JSON)
    ['f', 'dedup', 'seg', 'churn', 'seq', 'opted_out', 'since_ms']
    >>> opt_out(None, 10)["seq"]
    0
    """
    opted = new_state()
    opted["opted_out"] = True
    opted["since_ms"] = ts_ms
    opted["seq"] = state.get("seq", 0) if state is not None else 0
    return opted


def opt_in(state: CustomerState | None) -> CustomerState | None:
    """What the table holds after an opt-in: nothing for an opted-out customer
    (a tombstone: profiling starts afresh, with a new ``born``), else ``state``
    unchanged (the customer was being profiled already).

    Examples
    --------
    >>> opt_in(opt_out(None, 7)) is None
    True
    >>> state = new_state()
    >>> opt_in(state) is state, opt_in(None)
    (True, None)
    """
    return None if is_opted_out(state) else state


# What the table holds after an erasure: nothing (a tombstone), whatever the
# customer's record was, opted-out record included. The erase time (and the
# consent decision, which an erasure does not undo) is kept apart, in the
# ``suppressions`` table (``streams.worker.privacy_gate``), so a replay of older
# events cannot recreate the profile.
ERASED: CustomerState | None = None
