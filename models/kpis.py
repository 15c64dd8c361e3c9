"""Segment KPIs kept incrementally: each customer's contribution, and per-partition sums.

Every evaluation of a customer (an event, or the daily catch-up and sweep)
recomputes their **contribution** (:class:`KpiTracker`), stored in their
state under ``"kc"``::

    [members, flags, revenue_30d, clv, transitions, experiments]

* ``members``: ``"type.id"`` of every segment they are in, churn level included
  (``churn.high``);
* ``flags``: any behavioural event in the last 30 days, a product view in
  them, a purchase in them, churn level high, the category of the last NPS
  answer (bits, :data:`ACTIVE` …);
* ``revenue_30d`` and ``clv`` (365-day value, :mod:`models.clv`; ``None``
  without a purchase or before the spend model is fitted);
* ``transitions``: ``[day, type, left, entered]`` of their segment changes of the
  last :data:`LOG_DAYS` days;
* ``experiments``: per experiment the arm, exposures and closed outcomes
  (:mod:`models.experiments`).

A partition's KPIs are the sums of its customers' stored contributions
(:class:`Totals`), kept by :class:`KpiBook`: whenever a stored contribution
changes, the old one is subtracted and the new one added. A pass over the
partition's store (the daily sweep, which reads every customer anyway) sums
them again from scratch, which both *derives* the sums after a restart or a
rebalance and corrects the rounding of float sums; events handled during the
pass are added to the new sums for the customers it has passed
(:meth:`KpiBook.apply`). The sums are published per partition on
``stream-clock`` and added up by every worker (:func:`merge_records`), so any
worker answers ``GET /segments`` for the whole base without reading a
customer. ``docs/segments.md`` ("Segment KPIs") defines every figure.

Examples
--------
>>> tracker = KpiTracker()
>>> state = {"seg": {"lifecycle": {"current": "active"}}, "churn": {"level": "low"}}
>>> feats = {"events_30d": 3, "product_views_30d": 2, "orders_30d": 1, "revenue_30d": 80.0,
...          "nps_category": "promoter", "T": None}
>>> tracker.evaluated("c1", state, feats, 0, [], [])
>>> state["kc"][:4]
[['lifecycle.active', 'churn.low'], 23, 80.0, None]
>>> book = KpiBook(today=lambda: 0)
>>> book.apply(0, b'"c1"', None, state["kc"])
>>> kpis = segment_kpis(book.partitions[0].live, "lifecycle.active", 0)
>>> kpis["customers"], kpis["revenue_30d"], kpis["nps"], kpis["conversion_30d"]
(1, 80.0, 100.0, 1.0)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.churn_model import BTYDFit
from models.clv import customer_value
from models.customer import CustomerState
from models.eventtime import day_of
from models.experiments import ARMS, Experiment, close_due, enter, observe_event
from models.gamma_gamma import GammaGammaParams
from models.topics import BEHAVIOUR_TOPICS

__all__ = [
    "ACTIVE",
    "BOUGHT",
    "CHURN_HIGH",
    "KPI_NAMES",
    "LOG_DAYS",
    "SEG_FIELDS",
    "VIEWED",
    "WINDOW_DAYS",
    "XP_FIELDS",
    "KpiBook",
    "KpiTracker",
    "PartitionKpis",
    "Totals",
    "compact_contribution",
    "merge_records",
    "segment_kpis",
]

ACTIVE, VIEWED, BOUGHT, CHURN_HIGH = 1, 2, 4, 8
NPS_FLAGS = {"promoter": 16, "passive": 32, "detractor": 64}
#: Days of stream time the entered/exited counts cover.
WINDOW_DAYS = 30
#: CLVs the tracker remembers per input before it starts afresh.
CLV_CACHE_SIZE = 100_000
#: Days a customer's segment transitions stay in their contribution (one of slack).
LOG_DAYS = WINDOW_DAYS + 1
#: The KPIs of ``GET /segments``, in order.
KPI_NAMES: tuple[str, ...] = (
    "customers",
    "entered_30d",
    "exited_30d",
    "active_30d_share",
    "revenue_30d",
    "clv_365d_mean",
    "nps",
    "conversion_30d",
    "churn_high_share",
)
#: Per-segment sums of a partition.
SEG_FIELDS: tuple[str, ...] = (
    "customers",
    "active_30d",
    "viewed_30d",
    "converted_30d",
    "churn_high",
    "nps_promoters",
    "nps_passives",
    "nps_detractors",
    "revenue_30d",
    "clv_365d_sum",
    "clv_365d_customers",
)
#: Per-experiment, per-arm sums (see models.experiments).
XP_FIELDS: tuple[str, ...] = (
    "exposed",
    "closed",
    "active",
    "purchased",
    "revenue",
    "revenue_sq",
    "churn_high",
)
_MEMBERS, _FLAGS, _REVENUE, _CLV, _LOG, _XP = range(6)


@dataclass
class KpiTracker:
    """Computes a customer's contribution at each evaluation (no Kafka, no I/O).

    Parameters
    ----------
    experiments
        The configured experiments (:func:`models.experiments.parse_experiments`).
    purchases, spend
        The churn learner's BTYD fit and Gamma-Gamma parameters of the CLV
        (:meth:`set_models` when a model arrives; ``None``: no CLV).
    clv_tolerance
        A stored CLV is refreshed when the new value differs by more than this
        share of it, or of the mean spend per purchase for small values (the
        daily pass would otherwise rewrite every buyer each day, as ``T``
        grows); the error this leaves in a segment's mean is below it.
    """

    experiments: tuple[Experiment, ...] = ()
    purchases: BTYDFit | None = None
    spend: GammaGammaParams | None = None
    clv_tolerance: float = 0.05
    _by_segment: dict[str, list[Experiment]] = field(init=False, repr=False)
    _names: frozenset[str] = field(init=False, repr=False)
    _clv_cache: dict[tuple[Any, ...], float | None] = field(init=False, repr=False)
    _clv_models: tuple[Any, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # (here, not as the fields' defaults: mypyc's dataclasses leave those unset)
        self._clv_cache = {}
        self._clv_models = (None, None)
        self._by_segment = {}
        for experiment in self.experiments:
            self._by_segment.setdefault(experiment.segment_key, []).append(experiment)
        self._names = frozenset(e.name for e in self.experiments)

    def set_models(self, purchases: BTYDFit | None, spend: GammaGammaParams | None) -> None:
        """The CLV's models changed (a churn model arrived): CLVs are computed afresh.

        Every customer's stored CLV moves to the new models at their next
        evaluation (the daily sweep reaches everyone within a day).
        """
        self.purchases, self.spend = purchases, spend

    def applied(self, state: CustomerState, topic: str, event: Mapping[str, Any]) -> None:
        """An event was applied to the customer's features (before any evaluation).

        Counts it in their open experiment windows, and sets the flags it can
        only turn on (activity, product view), so a browsing event that skips
        the evaluation keeps the contribution exact. The evaluation that follows
        it, if any, opens windows after this, so an entering event is not its
        own outcome.
        """
        windows = state.get("xo")
        if windows:
            observe_event(windows, topic, event)
        kc = state.get("kc")
        if kc is None or topic not in BEHAVIOUR_TOPICS:
            return
        add = ACTIVE | VIEWED if event.get("action") == "product_view" else ACTIVE
        if kc[_FLAGS] & add != add:
            kc = list(kc)
            kc[_FLAGS] |= add
            state["kc"] = kc

    def evaluated(
        self,
        customer_id: str,
        state: CustomerState,
        feats: Mapping[str, Any],
        clock_ms: int,
        segment_changes: Sequence[dict[str, Any]],
        churn_events: Sequence[dict[str, Any]],
    ) -> None:
        """Refresh the contribution after an evaluation at ``clock_ms``.

        ``segment_changes`` and ``churn_events`` are the outputs of this very
        evaluation: those that enter an experiment's segment get its arm in
        their ``experiments`` field, and exposures and transitions are recorded.
        The stored contribution is replaced (never changed in place) only when
        it changed, so callers can tell by identity whether to write it.
        """
        old = state.get("kc")
        level = (state.get("churn") or {}).get("level")
        tallies: dict[str, list[Any]] = dict(old[_XP]) if old else {}
        windows = state.get("xo")
        experiments_changed = False
        if windows:
            experiments_changed = close_due(
                windows, tallies, clock_ms, level == "high", self._names
            )
            if not windows:
                del state["xo"]
        day = day_of(clock_ms)
        entries: list[list[Any]] = []
        for change in segment_changes:
            entries.append([day, change["segment_type"], change["previous"], change["current"]])
            if change["current"] is not None:
                found = self._enter(customer_id, state, change, tallies, clock_ms)
                experiments_changed |= found
        for churn in churn_events:
            entries.append([day, "churn", churn["previous_level"], churn["level"]])
            experiments_changed |= self._enter(customer_id, state, churn, tallies, clock_ms)
        members = [
            f"{t}.{e['current']}" for t, e in state["seg"].items() if e["current"] is not None
        ]
        if level:
            members.append(f"churn.{level}")
        flags = _flags(feats, level)
        revenue = float(feats.get("revenue_30d") or 0.0)
        clv = None
        if self.spend is not None and feats.get("T") is not None:
            clv = self._clv(
                feats.get("frequency"),
                feats.get("recency"),
                feats.get("T"),
                feats.get("monetary_value"),
            )
        if (
            old is not None
            and not entries
            and not experiments_changed
            and old[_MEMBERS] == members
            and old[_FLAGS] == flags
            and abs(old[_REVENUE] - revenue) <= 1e-9 * max(1.0, abs(revenue))
            and _close(old[_CLV], clv, self.clv_tolerance, self._clv_floor())
        ):
            return
        floor = day - LOG_DAYS + 1
        log = [entry for entry in (old[_LOG] if old else ()) if entry[0] >= floor]
        state["kc"] = [members, flags, revenue, clv, log + entries, tallies]

    def contribution_moves(self, state: CustomerState, feats: Mapping[str, Any]) -> bool:
        """Whether :meth:`evaluated` with ``feats`` would replace the stored contribution
        when no segment or churn level changes and no experiment window closes:
        its flags, 30-day revenue or CLV moved."""
        old = state.get("kc")
        if old is None:
            return True
        if old[_FLAGS] != _flags(feats, (state.get("churn") or {}).get("level")):
            return True
        revenue = float(feats.get("revenue_30d") or 0.0)
        if abs(old[_REVENUE] - revenue) > 1e-9 * max(1.0, abs(revenue)):
            return True
        return self.clv_moves(state, feats)

    def clv_moves(self, state: CustomerState, feats: Mapping[str, Any]) -> bool:
        """Whether :meth:`evaluated` with ``feats`` would store a new CLV (it left the
        tolerance around the stored one); ``False`` without CLV models."""
        if self.spend is None or feats.get("T") is None:
            return False
        kc = state.get("kc")
        old = kc[_CLV] if kc else None
        clv = self._clv(
            feats.get("frequency"),
            feats.get("recency"),
            feats.get("T"),
            feats.get("monetary_value"),
        )
        return not _close(old, clv, self.clv_tolerance, self._clv_floor())

    def _clv_floor(self) -> float:
        """Changes of a CLV below this are never worth a write: ``clv_tolerance`` of
        what an unknown customer spends per purchase (values decaying towards 0
        would otherwise change by more than the share every day)."""
        mean = self.spend.population_mean if self.spend is not None else None
        return self.clv_tolerance * (mean or 1.0)

    def _clv(self, frequency: Any, recency: Any, T: Any, monetary: Any) -> float | None:
        """:func:`models.clv.customer_value`, remembered per input (a customer's
        evaluations of one day share it, and so do customers with equal summaries)."""
        held = self._clv_models
        if (
            held[0] is not self.purchases
            or held[1] is not self.spend
            or len(self._clv_cache) >= CLV_CACHE_SIZE
        ):
            self._clv_cache, self._clv_models = {}, (self.purchases, self.spend)
        key = (frequency, recency, T, monetary)
        if key in self._clv_cache:
            return self._clv_cache[key]
        value = customer_value(frequency, recency, T, monetary, self.purchases, self.spend)
        self._clv_cache[key] = value
        return value

    def _enter(
        self,
        customer_id: str,
        state: CustomerState,
        event: dict[str, Any],
        tallies: dict[str, list[Any]],
        clock_ms: int,
    ) -> bool:
        """Mark an event entering experiment segments with the arms; open windows."""
        key = (
            f"churn.{event['level']}"
            if "level" in event
            else f"{event['segment_type']}.{event['current']}"
        )
        experiments = self._by_segment.get(key)
        if not experiments:
            return False
        windows = state.setdefault("xo", {})
        event["experiments"] = [
            {"name": e.name, "arm": enter(e, customer_id, clock_ms, windows, tallies)}
            for e in experiments
        ]
        return True


def _flags(feats: Mapping[str, Any], level: str | None) -> int:
    """The contribution's flags: NPS category, 30-day activity, views, purchases, high churn."""
    flags = NPS_FLAGS.get(feats.get("nps_category") or "", 0)
    if feats.get("events_30d"):
        flags |= ACTIVE
    if feats.get("product_views_30d"):
        flags |= VIEWED
    if feats.get("orders_30d"):
        flags |= BOUGHT
    if level == "high":
        flags |= CHURN_HIGH
    return flags


def _close(old: float | None, new: float | None, tolerance: float, floor: float) -> bool:
    if old is None or new is None:
        return old is new
    return abs(new - old) <= max(tolerance * abs(old), floor)


# --------------------------------------------------------------------------- sums


@dataclass
class Totals:
    """Sums of contributions: per segment, per day of transitions, per experiment arm."""

    seg: dict[str, list[float]] = field(default_factory=dict)
    days: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    xp: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, kc: Sequence[Any] | None, sign: int, floor: int) -> None:
        """Add (``sign`` 1) or subtract (-1) one contribution; days before ``floor`` are
        out of every window and left alone."""
        if kc is None:
            return
        members, flags, revenue, clv, log, tallies = kc
        if members:
            vector = (
                sign,
                sign if flags & ACTIVE else 0,
                sign if flags & VIEWED else 0,
                sign if flags & VIEWED and flags & BOUGHT else 0,
                sign if flags & CHURN_HIGH else 0,
                sign if flags & 16 else 0,
                sign if flags & 32 else 0,
                sign if flags & 64 else 0,
                sign * revenue,
                0.0 if clv is None else sign * clv,
                0 if clv is None else sign,
            )
            seg = self.seg
            for member in members:
                sums = seg.get(member)
                if sums is None:
                    seg[member] = list(vector)
                else:
                    for i, value in enumerate(vector):
                        sums[i] += value
        for day, seg_type, left, entered in log:
            if day < floor:
                continue
            bucket = self.days.setdefault(day, {})
            if entered is not None:
                bucket.setdefault(f"{seg_type}.{entered}", [0, 0])[0] += sign
            if left is not None:
                bucket.setdefault(f"{seg_type}.{left}", [0, 0])[1] += sign
        for name, tally in tallies.items():
            arms = self.xp.setdefault(name, {})
            sums = arms.setdefault(ARMS[tally[0]], [0] * len(XP_FIELDS))
            for i, value in enumerate(tally[1:]):
                sums[i] += sign * value

    def merge(self, other: Totals) -> None:
        """Add ``other`` (another partition) into these sums."""
        for key, values in other.seg.items():
            sums = self.seg.setdefault(key, [0] * len(SEG_FIELDS))
            for i, value in enumerate(values):
                sums[i] += value
        for day, bucket in other.days.items():
            mine = self.days.setdefault(day, {})
            for key, (entered, exited) in bucket.items():
                counts = mine.setdefault(key, [0, 0])
                counts[0] += entered
                counts[1] += exited
        for name, arms in other.xp.items():
            for arm, values in arms.items():
                sums = self.xp.setdefault(name, {}).setdefault(arm, [0] * len(XP_FIELDS))
                for i, value in enumerate(values):
                    sums[i] += value

    def forget_before(self, floor: int) -> None:
        """Drop the day buckets before ``floor``."""
        for day in [d for d in self.days if d < floor]:
            del self.days[day]

    def to_record(self, floor: int) -> dict[str, Any]:
        """JSON form (published on ``stream-clock``); empty entries are left out."""
        return {
            "seg": {k: v for k, v in self.seg.items() if v[0]},
            "days": {
                str(day): {k: v for k, v in bucket.items() if v[0] or v[1]}
                for day, bucket in sorted(self.days.items())
                if day >= floor and any(v[0] or v[1] for v in bucket.values())
            },
            "xp": self.xp,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Totals:
        """Inverse of :meth:`to_record` (tolerant of missing parts)."""
        return cls(
            seg={k: list(v) for k, v in (record.get("seg") or {}).items()},
            days={
                int(day): {k: list(v) for k, v in bucket.items()}
                for day, bucket in (record.get("days") or {}).items()
            },
            xp={
                n: {a: list(v) for a, v in arms.items()}
                for n, arms in (record.get("xp") or {}).items()
            },
        )


@dataclass
class PartitionKpis:
    """The sums of one partition, and the pass that derives them again."""

    live: Totals = field(default_factory=Totals)
    derived: bool = False  # live holds every customer (a pass completed since assignment)
    building: Totals | None = None  # the pass under way
    cursor: bytes | None = None  # last key the pass counted
    listed: frozenset[bytes] = frozenset()  # keys the pass listed and will count
    listed_last: bytes | None = None

    def passed(self, key: bytes) -> bool:
        """Whether the pass under way will not count ``key`` itself (so it must be told)."""
        if self.cursor is not None and key <= self.cursor:
            return True
        return self.listed_last is not None and key <= self.listed_last and key not in self.listed


class KpiBook:
    """Per-partition KPI sums of the partitions this worker owns.

    Parameters
    ----------
    today
        The stream clock's day (transitions of days before ``today - LOG_DAYS``
        are out of every window).

    Examples
    --------
    A pass derives the sums from the stored contributions while events go on:

    >>> book = KpiBook(today=lambda: 10)
    >>> a = [["value.mid"], 1, 10.0, None, [], {}]
    >>> b = [["value.mid"], 0, 5.0, None, [], {}]
    >>> book.begin_pass(0); book.listed(0, [b'"a"', b'"b"'])
    >>> book.count(0, b'"a"', a)
    >>> book.apply(0, b'"a"', a, b)  # an event changes "a", counted already
    >>> book.apply(0, b'"b"', b, a)  # and "b", not counted yet
    >>> book.count(0, b'"b"', a); book.end_pass(0)
    >>> book.partitions[0].live.seg["value.mid"][:2], book.partitions[0].live.seg["value.mid"][8]
    ([2, 1], 15.0)
    """

    def __init__(self, today: Callable[[], int]) -> None:
        self.today = today
        self.partitions: dict[int, PartitionKpis] = {}

    def floor(self) -> int:
        """First day whose transitions still count."""
        return self.today() - LOG_DAYS + 1

    def apply(
        self, partition: int, key: bytes, old: Sequence[Any] | None, new: Sequence[Any] | None
    ) -> None:
        """A customer's stored contribution changes from ``old`` to ``new``."""
        if old is new or old == new:
            return
        book = self.partitions.get(partition)
        if book is None:
            book = self.partitions[partition] = PartitionKpis()
        floor = self.floor()
        book.live.add(old, -1, floor)
        book.live.add(new, 1, floor)
        if book.building is not None and book.passed(key):
            book.building.add(old, -1, floor)
            book.building.add(new, 1, floor)

    # -- the pass ---------------------------------------------------------------
    def begin_pass(self, partition: int) -> None:
        """A pass over the partition's store starts: new sums from nothing."""
        book = self.partitions.setdefault(partition, PartitionKpis())
        book.building, book.cursor = Totals(), None
        book.listed, book.listed_last = frozenset(), None

    def listed(self, partition: int, keys: Sequence[bytes]) -> None:
        """The pass listed these keys (in order) and will :meth:`count` each."""
        book = self.partitions.get(partition)
        if book is not None and book.building is not None and keys:
            book.listed, book.listed_last = frozenset(keys), keys[-1]

    def count(self, partition: int, key: bytes, kc: Sequence[Any] | None) -> None:
        """The pass reached ``key``; ``kc`` is its stored contribution (None: none)."""
        book = self.partitions.get(partition)
        if book is None or book.building is None:
            return
        book.building.add(kc, 1, self.floor())
        book.cursor = key

    def end_pass(self, partition: int) -> None:
        """The pass counted every customer: its sums replace the live ones."""
        book = self.partitions.get(partition)
        if book is None or book.building is None:
            return
        book.live, book.derived, book.building = book.building, True, None
        book.cursor, book.listed, book.listed_last = None, frozenset(), None

    def abort_pass(self, partition: int) -> None:
        """The pass stopped half-way: keep the live sums."""
        book = self.partitions.get(partition)
        if book is not None:
            book.building, book.cursor = None, None
            book.listed, book.listed_last = frozenset(), None

    def drop(self, partition: int) -> None:
        """The partition moved to another worker."""
        self.partitions.pop(partition, None)

    def derived(self, partition: int) -> bool:
        """Whether the live sums of ``partition`` hold every customer."""
        book = self.partitions.get(partition)
        return book is not None and book.derived

    def record(self, partition: int) -> dict[str, Any] | None:
        """The partition's sums to publish; ``None`` until derived."""
        book = self.partitions.get(partition)
        if book is None or not book.derived:
            return None
        floor = self.floor()
        book.live.forget_before(floor)
        return book.live.to_record(floor)

    def local_totals(self, partitions: Iterable[int]) -> Totals:
        """Sums over the derived ``partitions`` (this worker's, for its metrics)."""
        totals = Totals()
        for partition in partitions:
            book = self.partitions.get(partition)
            if book is not None and book.derived:
                totals.merge(book.live)
        return totals


# --------------------------------------------------------------------------- reading


_NO_TALLIES: Mapping[str, Any] = {}  # (shared; read only)


def compact_contribution(kc: Sequence[Any] | None, floor: int) -> tuple[Any, ...] | None:
    """A customer's contribution as :meth:`Totals.add` reads it from ``floor`` on,
    in less memory: the log without its days before ``floor`` (never counted again),
    segment names interned. For contributions kept in memory for many customers.

    >>> kc = [["lifecycle.active"], 1, 20.0, None, [[3, "lifecycle", None, "new"],
    ...       [9, "lifecycle", "new", "active"]], {}]
    >>> compact_contribution(kc, floor=5)
    (('lifecycle.active',), 1, 20.0, None, ((9, 'lifecycle', 'new', 'active'),), {})
    >>> a, b = Totals(), Totals()
    >>> a.add(kc, 1, 5); b.add(compact_contribution(kc, 5), 1, 5); a == b
    True
    """
    if kc is None:
        return None
    intern = sys.intern
    members, flags, revenue, clv, log, tallies = kc
    return (
        tuple(intern(m) for m in members),
        flags,
        revenue,
        clv,
        tuple(
            (
                day,
                intern(seg_type),
                None if left is None else intern(left),
                None if entered is None else intern(entered),
            )
            for day, seg_type, left, entered in log
            if day >= floor
        ),
        tallies or _NO_TALLIES,
    )


def merge_records(records: Iterable[Mapping[str, Any]]) -> Totals:
    """Sum the published per-partition records (the whole base)."""
    totals = Totals()
    for record in records:
        totals.merge(Totals.from_record(record))
    return totals


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def segment_kpis(totals: Totals, key: str, today: int) -> dict[str, Any]:
    """The KPIs of segment ``key`` (``"type.id"``) as of the stream day ``today``.

    Definitions (``docs/segments.md``): shares are over the segment's members,
    ``nps`` = % promoters - % detractors among members who answered,
    ``conversion_30d`` = members who viewed a product in the last 30 days and
    bought in them / members who viewed; ``None`` where the denominator is 0.

    >>> t = Totals(seg={"nps.detractor": [4, 2, 2, 1, 1, 0, 0, 4, 100.0, 300.0, 3]},
    ...            days={9: {"nps.detractor": [3, 1]}, -30: {"nps.detractor": [5, 5]}})
    >>> kpis = segment_kpis(t, "nps.detractor", 9)
    >>> kpis["entered_30d"], kpis["active_30d_share"], kpis["clv_365d_mean"], kpis["nps"]
    (3, 0.5, 100.0, -100.0)
    """
    sums = totals.seg.get(key) or [0] * len(SEG_FIELDS)
    (
        customers,
        active,
        viewed,
        converted,
        high,
        promoters,
        passives,
        detractors,
        revenue,
        clv_sum,
        clv_n,
    ) = sums
    entered = exited = 0
    for day, bucket in totals.days.items():
        if today - WINDOW_DAYS < day <= today and key in bucket:
            entered += bucket[key][0]
            exited += bucket[key][1]
    answered = promoters + passives + detractors
    nps = _ratio(100.0 * (promoters - detractors), answered)
    return {
        "customers": int(customers),
        "entered_30d": int(entered),
        "exited_30d": int(exited),
        "active_30d_share": _ratio(active, customers),
        "revenue_30d": round(float(revenue), 6),
        "clv_365d_mean": _ratio(clv_sum, clv_n),
        "nps": nps,
        "conversion_30d": _ratio(converted, viewed),
        "churn_high_share": _ratio(high, customers),
    }
