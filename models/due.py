"""When a silent customer next needs evaluating: the due day (issue #15, item 3).

The daily pass (:meth:`models.processing.CustomerProcessor.catch_up`) evaluates
a customer without new events at the start of every day since their last
evaluation. Almost all of those evaluations change nothing: a customer's
features move with the clock only in a few, predictable ways. This module
computes, for a customer just evaluated at day ``D`` (``state["eval_day"]``),
the first day ``D' > D`` at whose start an evaluation *could* produce any
output or state change — or an earlier day where the exact one is hard. It is
**safe**: it is never later than the first day the day-by-day catch-up would
change something, so evaluating only at due days gives the same outputs, with
the same ids and times, and the same final state (``tests/models/test_due.py``
checks exactly that against the brute force).

How the features move without events
------------------------------------
Read at the start of day ``d > D`` (after the customer's newest event, so the
read clock is ``d`` itself), :func:`models.features.read_features` differs from
day to day only in

* the **durations** ``T``, ``days_since_last_purchase``,
  ``days_since_last_event``: each is ``d - constant``;
* the **windowed counts** (``*_30d``, ``*_90d``, ``*_7d``, ``active_days_30d``,
  ``cart_abandonment_rate``): they change only when a day bucket (or a
  ticket's first day) leaves a window, at ``bucket day + 7 / 30 / 90``.

Everything else (lifetime counts, averages, timestamps, NPS, profile) is
constant. So the days after ``D`` split into **pieces** between window expiries
(:func:`window_expiry_days`: ``bucket day + 30 / 90`` — ``+ 7`` only when a rule
reads a 7-day feature —, ``ticket first day + 30 / 90``, ``last activity + 30``
where the churn rhythm estimate drops a candidate); inside a piece the feature
dict is the one read at its first day with the three durations shifted
(:func:`shifted`). :func:`next_due` takes the calendar's due day, then reads
the features once per piece before it and looks for the first day anything
moves there; the first piece with a move gives the day.

Components and their due day
----------------------------
=================== ================================================ ===========
component           due day                                          exact?
=================== ================================================ ===========
learner refresh     ``last sample + 7 days`` (rounded up to a day)    exact
churn snapshots     :meth:`ChurnTracking.next_due_day` (snapshot day  exact
                    or the oldest pending snapshot's release)
experiment windows  the day an open window ends                       exact or a
                                                                      day early
rule segments       probed (``RuleEngine.changes``, no words) at the  exact
(lifecycle, value,  piece's first day, and at the days a lifecycle
nps, user rules)    comparison can flip (``days_since_last_purchase``
                    passing the at-risk / lapsed thresholds, tenure
                    passing ``new_days``, a prospect's silence
                    passing ``lapsed_days``, ``reactivated`` ending)
                    and a dwell ends (each and the day after): the
                    rules' answer is constant between those days. A
                    user rule (or value feature) reading a duration:
                    probed every day of the piece
churn level         probed at the piece's first day; after it the     exact (given
                    score only grows inside a piece (P(alive) and     the monotone
                    expected purchases fall with ``T``, inactivity    score; a
                    grows with the silence and the rhythm estimate    negative
                    only shrinks), so a level move, once there,       weight on a
                    stays: one probe at the piece's last day, then    time factor:
                    a bisection                                       daily probes)
KPI contribution    flags and 30-day revenue compared at the piece's  exact (given
                    first day; the CLV falls with ``T``: bisection    the monotone
                    for where it leaves its tolerance; memberships    CLV)
                    follow the segments
cluster             only ``dormancy`` (``log1p`` of the silence)      exact, or 1-2
                    moves, plus ``purchase_rate`` while the tenure    days early
                    is under 90 days (probed every day there). With
                    one moving standardised coordinate ``z``,
                    "another centroid is closer by the hysteresis"
                    is ``q_k(z) < 0`` for a quadratic ``q_k`` (all
                    squared distances have the same curvature):
                    :meth:`SegmentAssigner.leaving_intervals` solves
                    it per centroid; mapped back to a day through
                    ``expm1``, a day early against rounding
cluster model       a changed model (other cluster ids) makes the     exact
                    customer due at once (``D + 1``; the sweep's
                    ``due_for_review`` check covers it too)
cap                 ``D + MAX_WAIT_DAYS``                             bound
=================== ================================================ ===========

The monotonicity the churn and CLV searches rely on is a property of the BTYD
formulas with non-negative weights, not checked at run time (only the sign of
the churn model's weights is); the oracle test checks the outcome on
simulated histories with the prior, a learned-looking and a non-monotone model.

Not covered: ``state["churn"]["score"]`` (a cache rewritten by every
evaluation, never an output, not written back by a review) and
``state["eval_day"]`` itself.

How the daily pass uses it
--------------------------
:mod:`streams.worker.due_index` (wired in
:meth:`streams.worker.pipeline.Pipeline.review_partition`):

* The plans live in memory, per partition: a missing plan (a new worker, a
  restart, a rebalance) means "evaluate at the next pass", as before.
* Only customers silent for a week are planned (a plan costs about two
  evaluations, and a customer with a recent event usually has another
  before it pays: measured in ``docs/benchmark.md``); the others are
  evaluated at every pass, as before.
* The pass of day ``X`` skips a customer whose due day is after ``X``;
  otherwise it catches them up from their due day
  (``reviewed_through=due - 1``: the days before change nothing) to ``X``
  and plans again, with ``reuse=`` the previous plan when the pass changed
  no segment, churn level or KPI contribution. The plan looks only as far as
  the calendar's due day (``look_ahead_days=0``); a reused one looks further
  from where it stopped.
* Any event, privacy request, new churn model (its scores, snapshots and the
  CLV's models) or cluster model with other ids voids the plans it concerns.
  Refreshed centroids with the same ids do not (decided): a silent customer
  meets them at their next due day, at the latest their next churn snapshot
  (15 days with the default horizon). The weekly learner refresh sample is
  taken without an evaluation (``plan(..., refresh=False)``,
  :meth:`CustomerProcessor.refresh`).
* A restart or backlog then costs ``O(events + changes)`` evaluations.

Measured (``pytest -s tests/models/test_due.py``; 400 silent days after every
stopping point; due-day evaluations that changed nothing in brackets; time:
``plan`` with ``reuse`` plus the evaluations at due days, against the daily
catch-up):

=========================================== ============ ======== ==========
histories                                   evaluations  skipped  time saved
=========================================== ============ ======== ==========
200 separated personas, 120 days, worker    12,986 of    78.9 %   60 %
defaults, 154 stopping points               61,600 (30)
the same, every event up to 10 days late,   9,633 of     79.1 %   59 %
115 stopping points                         46,000 (28)
150 default-mix customers, 150 days, a      13,951 of    77.2 %   43 %
duration user rule, KPI tracker (two        61,200 (22)
experiments, CLV), 153 stopping points
=========================================== ============ ======== ==========

So the due day is all but exact: the evaluations left are days that change
something. Most of them are the learner's weekly **refresh sample** (every
customer with behaviour, forever: it alone caps the skip at 6/7) and the
**churn snapshots** every ``ceil(H / 6)`` = 15 days. A plan costs ~65 µs
(~130 µs with a user rule reading a duration, probed daily), against ~75-90 µs
for an evaluation: it reads the features once per piece and probes churn, rules
and the cluster a few times, and a reused plan only redoes the calendar. The
next step that would raise both figures is outside this module: a refresh
sample only when the customer's cluster vector moved (not every week) would
leave the snapshots as the main cadence.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from models.churn import churn_level
from models.churn_model import ChurnModel
from models.clustering import SegmentAssigner, cluster_vector
from models.customer import CustomerState
from models.eventtime import MS_PER_DAY
from models.features import read_features
from models.kpis import KpiTracker
from models.processing import (
    REFRESH_SAMPLE_MS,
    CustomerProcessor,
    assigner_signature,
    has_behaviour,
)

__all__ = [
    "DURATION_FEATURES",
    "LOOK_AHEAD_DAYS",
    "MAX_WAIT_DAYS",
    "Due",
    "next_due",
    "next_due_day",
    "plan",
    "refresh_day",
    "shifted",
    "window_expiry_days",
]

MAX_WAIT_DAYS = 120
"""A customer is evaluated at least this often, whatever the analysis says."""
LOOK_AHEAD_DAYS = 35
"""How far :func:`plan` looks for moves beyond the calendar's due day (reusable)."""
DURATION_FEATURES = frozenset({"T", "days_since_last_purchase", "days_since_last_event"})
"""The features that grow by one every day without events."""
_SEVEN_DAY = frozenset({"orders_7d", "revenue_7d", "events_7d"})
_CLUSTER_RATE_DAYS = 90  # purchase_rate's window stops growing once T + 1 >= 90
# Factors of the churn model that move with the silence / tenure inside an interval.
_TIME_FACTORS = ("not_alive", "inactivity", "low_expected_purchases")
_ROUNDING = 1e-9  # slack on a computed bound of dormancy
_MAX_LOG_IDLE = 20.0  # log1p of ~1,300 years of silence
# experiments.py: an open window is [entry ms, end ms, arm, ...]
_XO_END = 1


def shifted(base: Mapping[str, Any], days: int) -> dict[str, Any]:
    """The features ``days`` days after ``base`` (read after the customer's newest
    event), inside an interval without window expiries: the durations grow.

    >>> shifted({"T": 3, "days_since_last_event": None, "orders": 2}, 5)
    {'T': 8, 'days_since_last_event': None, 'orders': 2}
    """
    out = dict(base)
    for name in DURATION_FEATURES:
        value = out.get(name)
        if value is not None:
            out[name] = value + days
    return out


def _rule_features(processor: CustomerProcessor) -> set[str]:
    """Every feature the rule segments read (value feature, user rules)."""
    config = processor.rules.config
    names = {config.value_feature}
    for rule in config.user_rules:
        for case in rule.cases:
            names.update(name.split(".")[0] for name in case.when.features_used)
    return names


def window_expiry_days(
    f: Mapping[str, Any], day: int, seven: bool = False, until: int | None = None
) -> list[int]:
    """The days after ``day`` (and before ``until``) at which a windowed feature of
    the feature state ``f`` may change without a new event, sorted.

    >>> window_expiry_days({"d": {"10": [1, 0, 0.0, 0, 0, 0, 0]}, "t": {}, "la": None}, 20)
    [40, 100]
    >>> window_expiry_days({"d": {"10": [1, 0, 0.0, 0, 0, 0, 0]}, "t": {}, "la": None}, 12, True)
    [17, 40, 100]
    """
    horizons = (7, 30, 90) if seven else (30, 90)
    days: set[int] = set()
    for key, bucket in f["d"].items():
        if any(bucket):
            b = int(key)
            days.update(b + h for h in horizons)
    for ticket in f["t"].values():
        first = ticket[0] // MS_PER_DAY
        days.update((first + 30, first + 90))
    last = f.get("la")
    if last is not None:  # the churn rhythm's 30-day estimate ends
        days.add(last // MS_PER_DAY + 30)
    return sorted(d for d in days if day < d and (until is None or d < until))


def _day_at_or_after_ms(ms: float) -> int:
    """The first day whose start is at or after ``ms``, or one day earlier
    (``floor``: never later, whatever the rounding of a fractional ``ms``)."""
    return math.floor(ms / MS_PER_DAY)


def _first_day_reaching(since_ms: int, days: float) -> int:
    """The first day ``d`` with ``d * MS_PER_DAY - since_ms >= days * MS_PER_DAY``,
    compared exactly as the rules compare it (a dwell's or ``reactivated``'s end)."""
    limit = days * MS_PER_DAY
    d = math.ceil((since_ms + limit) / MS_PER_DAY)
    while (d - 1) * MS_PER_DAY - since_ms >= limit:
        d -= 1
    while d * MS_PER_DAY - since_ms < limit:
        d += 1
    return d


def _first_true(lo: int, hi: int, pred: Callable[[int], bool], monotone: bool) -> int | None:
    """The first day in ``[lo, hi)`` where ``pred`` holds (``None``: none).

    ``monotone``: ``pred`` never turns false again, so the last day decides and a
    bisection finds the first; otherwise every day is probed."""
    if lo >= hi:
        return None
    if not monotone:
        for d in range(lo, hi):
            if pred(d):
                return d
        return None
    if not pred(hi - 1):
        return None
    while lo < hi - 1:
        mid = (lo + hi - 1) // 2
        if pred(mid):
            hi = mid + 1
        else:
            lo = mid + 1
    return lo


def _lifecycle_days(
    processor: CustomerProcessor, state: CustomerState, base: Mapping[str, Any], start: int
) -> list[int]:
    """Every day at which a lifecycle comparison can flip (see the rules' decide)."""
    c = processor.rules.config
    out: list[int] = []
    dslp = base.get("days_since_last_purchase")
    dsle = base.get("days_since_last_event")
    big_t = base.get("T")
    if dslp is not None:
        last_purchase = start - int(dslp)
        frequency = float(base.get("frequency") or 0.0)
        recency = float(base.get("recency") or 0.0)
        risk_days = float(c.at_risk_min_days)
        if frequency > 0 and c.at_risk_factor * (recency / frequency) > risk_days:
            risk_days = c.at_risk_factor * (recency / frequency)
        out.append(last_purchase + math.floor(risk_days) + 1)  # dslp > risk_days
        out.append(last_purchase + math.floor(c.lapsed_days) + 1)
    if big_t is not None:
        out.append(start - int(big_t) + math.floor(c.new_days) + 1)  # age > new_days
    if dsle is not None:
        out.append(start - int(dsle) + math.floor(c.lapsed_days) + 1)
    entry = state["seg"].get("lifecycle")
    if entry and entry.get("current") == "reactivated" and isinstance(entry.get("since_ms"), int):
        out.append(_first_day_reaching(entry["since_ms"], c.reactivated_days))
    return out


def _dwell_days(processor: CustomerProcessor, state: CustomerState) -> list[int]:
    """The day each segment type's minimum dwell ends (a held change may happen then)."""
    c = processor.rules.config
    dwell = {
        "lifecycle": c.lifecycle_min_dwell_days,
        "value": c.value_min_dwell_days,
        "nps": c.nps_min_dwell_days,
    }
    dwell.update({rule.name: rule.min_dwell_days for rule in c.user_rules})
    out = []
    for seg_type, days in dwell.items():
        entry = state["seg"].get(seg_type)
        if days > 0 and entry and isinstance(entry.get("since_ms"), int):
            out.append(_first_day_reaching(entry["since_ms"], days))
    return out


def _churn_monotone(model: ChurnModel) -> bool:
    return all(model.weights.get(name, 0.0) >= 0.0 for name in _TIME_FACTORS)


def _cluster_day(
    assigner: SegmentAssigner,
    state: CustomerState,
    base: Mapping[str, Any],
    start: int,
    end: int,
) -> int | None:
    """The first day in ``[start, end)`` the cluster placement may move (or ``None``)."""
    if not assigner.ready or not has_behaviour(dict(base)):
        return None
    current = (state["seg"].get("cluster") or {}).get("current")
    if current is None:
        return start

    def moves(d: int) -> bool:
        placed = assigner.assign(cluster_vector(shifted(base, d - start)), current, False)[0]
        return placed is not None and placed != current

    # purchase_rate moves with T while the tenure is short: probe those days.
    d0 = start
    big_t = base.get("T")
    if big_t is not None and (base.get("orders_90d") or 0) > 0 and big_t + 1 < _CLUSTER_RATE_DAYS:
        steady = start + (_CLUSTER_RATE_DAYS - 1 - int(big_t))  # first day with T + 1 >= 90
        found = _first_true(start, min(steady, end), moves, monotone=False)
        if found is not None or steady >= end:
            return found
        d0 = steady
    idle = base.get("days_since_last_event")
    if idle is None:  # no dimension moves from d0 on
        return d0 if moves(d0) else None
    # From d0 on only dormancy = log1p(idle) moves, and it only grows.
    intervals = assigner.leaving_intervals(
        cluster_vector(shifted(base, d0 - start)), current, "dormancy"
    )
    if intervals is None:
        return _first_true(d0, end, moves, monotone=False)
    idle0 = int(idle) + (d0 - start)
    dormancy0 = math.log1p(idle0)
    best: int | None = None
    for lo, hi in intervals:
        if dormancy0 >= hi + _ROUNDING or lo > _MAX_LOG_IDLE:
            continue  # passed already, or beyond any day
        # the first idle with log1p(idle) > lo, a day early against rounding (d0 when
        # dormancy0 is inside or within rounding of the interval)
        candidate = d0 + max(0, math.floor(math.expm1(lo)) - idle0 - 1)
        if best is None or candidate < best:
            best = candidate
    return best if best is not None and best < end else None


def refresh_day(state: CustomerState) -> int | None:
    """The day the customer's next learner refresh sample is due (``None``: never,
    they have no behaviour).

    >>> refresh_day({"train_day": 10}), refresh_day({"train_ms": 10 * 86_400_000 + 1})
    (17, 18)
    """
    last = state.get("train_ms")
    if last is None and state.get("train_day") is not None:
        last = state["train_day"] * MS_PER_DAY
    if last is None:
        return None
    return int(-(-(last + REFRESH_SAMPLE_MS) // MS_PER_DAY))


def _calendar_due(
    processor: CustomerProcessor,
    customer_id: str,
    state: CustomerState,
    day: int,
    refresh: bool = True,
) -> list[tuple[int | None, str]]:
    """The due days known from the calendar alone: the learner's refresh sample
    (unless ``refresh`` is false), churn snapshots, experiment windows."""
    out: list[tuple[int | None, str]] = []
    if refresh:
        out.append((refresh_day(state), "refresh"))
    churn = state.get("churn") or {}
    out.append((processor.tracking.next_due_day(churn, customer_id, day), "snapshot"))
    for window in (state.get("xo") or {}).values():
        out.append((_day_at_or_after_ms(window[_XO_END]), "experiment"))
    return out


@dataclass
class _Piece:
    """One stretch ``[lo, hi)`` of days without a window expiry inside: the features
    are ``base`` (read at ``lo``) with the durations shifted."""

    processor: CustomerProcessor
    state: CustomerState
    lo: int
    hi: int
    base: dict[str, Any]

    def at(self, d: int) -> dict[str, Any]:
        return shifted(self.base, d - self.lo)

    def rules_day(self, previous: Mapping[str, Mapping[str, Any]], daily: bool) -> int | None:
        """The first day a rule segment changes. Without a rule reading a duration,
        the rules' answer only moves at ``lo`` (new window counts), at a lifecycle
        threshold or at a dwell's end: those days are probed; else every day is."""
        rules = self.processor.rules
        lo, hi = self.lo, self.hi

        def moves(d: int) -> bool:
            return bool(rules.changes(self.at(d), previous, d * MS_PER_DAY))

        if daily:
            return _first_true(lo, hi, moves, monotone=False)
        candidates = {lo}
        # each exact; the day after too, against an off-by-one in the arithmetic
        for c in _lifecycle_days(self.processor, self.state, self.base, lo) + _dwell_days(
            self.processor, self.state
        ):
            candidates.update((c, c + 1))
        for d in sorted(c for c in candidates if lo <= c < hi):
            if moves(d):
                return d
        return None

    def churn_day(self, model: ChurnModel) -> int | None:
        """The first day the churn level moves. Inside a piece the score only grows
        (when the time-driven factors weigh >= 0): once it moves up it stays moved,
        so after ``lo`` a bisection finds the day."""
        level = (self.state.get("churn") or {}).get("level")
        thresholds = self.processor.thresholds

        def moves(d: int) -> bool:
            score = model.score(self.at(d), explain=False).score
            return churn_level(score, level, thresholds) != level

        if moves(self.lo):
            return self.lo
        return _first_true(self.lo + 1, self.hi, moves, monotone=_churn_monotone(model))

    def kpi_day(self, tracker: KpiTracker) -> int | None:
        """The first day the KPI contribution is replaced: flags and 30-day revenue
        move only at ``lo``; the CLV falls with ``T`` (once out of its tolerance,
        it stays out)."""
        if tracker.contribution_moves(self.state, self.base):
            return self.lo

        def moves(d: int) -> bool:
            return tracker.clv_moves(self.state, self.at(d))

        return _first_true(self.lo + 1, self.hi, moves, monotone=True)


@dataclass(frozen=True, slots=True)
class Due:
    """A customer's plan after an evaluation (:func:`plan`).

    ``day``/``reason``: the due day and what set it (``None``: never). ``moves``
    and ``moves_reason``: the first day the rules, churn level, KPI contribution
    or cluster placement move (``None``: none before ``scanned``, the end of the
    days looked at). Those only depend on state an evaluation that took nothing
    but a churn snapshot or a learner refresh sample leaves alone, so after such
    an evaluation the plan can be made again with ``reuse=`` this one, which
    only redoes the calendar.
    """

    day: int | None
    reason: str
    moves: int | None = None
    moves_reason: str = ""
    scanned: int = 0


def next_due_day(
    processor: CustomerProcessor,
    customer_id: str,
    state: CustomerState,
    assigner: SegmentAssigner | None,
    churn_params: Any = None,
    max_wait_days: int = MAX_WAIT_DAYS,
) -> int | None:
    """The first day after ``state["eval_day"]`` whose evaluation may change anything.

    :func:`plan` without the reason.
    """
    return plan(processor, customer_id, state, assigner, churn_params, max_wait_days).day


def next_due(
    processor: CustomerProcessor,
    customer_id: str,
    state: CustomerState,
    assigner: SegmentAssigner | None,
    churn_params: Any = None,
    max_wait_days: int = MAX_WAIT_DAYS,
) -> tuple[int | None, str]:
    """:func:`plan`'s due day and reason."""
    due = plan(processor, customer_id, state, assigner, churn_params, max_wait_days)
    return due.day, due.reason


def plan(
    processor: CustomerProcessor,
    customer_id: str,
    state: CustomerState,
    assigner: SegmentAssigner | None,
    churn_params: Any = None,
    max_wait_days: int = MAX_WAIT_DAYS,
    reuse: Due | None = None,
    look_ahead_days: int = LOOK_AHEAD_DAYS,
    refresh: bool = True,
) -> Due:
    """The first day after ``state["eval_day"]`` whose start-of-day evaluation may
    change anything (segments, churn level, snapshots, refresh samples, KPIs).

    ``processor``, ``assigner`` and ``churn_params`` must be the ones the
    evaluation will run with; see the module docstring for what each part of
    the answer is based on. The reason names the component that set the day
    (``never``, ``model``, ``cap``, ``refresh``, ``snapshot``, ``experiment``,
    ``rules``, ``churn``, ``kpi``, ``cluster``).

    ``reuse``: the plan made after an earlier evaluation of this customer, when
    every evaluation since (and no event) changed nothing but churn snapshots
    and learner refresh samples (no segment change, churn event or new KPI
    contribution): its rules/churn/KPI/cluster answer still holds, only the
    calendar is redone. The analysis looks ``look_ahead_days`` ahead (at least
    to the calendar's due day), so that one analysis serves several weeks of
    refresh samples and snapshots.

    ``refresh=False`` leaves the learner's refresh sample out of the calendar,
    for a caller that takes the samples itself on the days :func:`refresh_day`
    names (:meth:`CustomerProcessor.refresh`, which costs no evaluation).
    """
    if state.get("opted_out") or "eval_day" not in state:
        return Due(None, "never")
    day: int = state["eval_day"]
    start = day + 1
    if assigner is not None and state.get("model") != assigner_signature(assigner):
        return Due(start, "model")
    cap = start + max_wait_days
    due, why = cap, "cap"
    for candidate, reason in _calendar_due(processor, customer_id, state, day, refresh):
        if candidate is not None and candidate < due:
            due, why = max(candidate, start), reason
    if due <= start:
        return Due(due, why)
    ahead = min(cap, max(due, start + look_ahead_days))
    usable = reuse is not None and reuse.scanned > start
    if reuse is not None and usable and (reuse.moves is None or reuse.moves >= start):
        moves, moves_why, scanned = reuse.moves, reuse.moves_reason, reuse.scanned
        if moves is None and scanned < due:  # look further, from where it stopped
            moves, moves_why = _first_move(processor, state, assigner, churn_params, scanned, ahead)
            scanned = ahead
    else:
        scanned = ahead
        moves, moves_why = _first_move(processor, state, assigner, churn_params, start, scanned)
    if moves is not None and moves < due:
        due, why = moves, moves_why
    return Due(due, why, moves, moves_why, scanned)


def _first_move(
    processor: CustomerProcessor,
    state: CustomerState,
    assigner: SegmentAssigner | None,
    churn_params: Any,
    start: int,
    end: int,
) -> tuple[int | None, str]:
    """The first day in ``[start, end)`` the rules, churn level, KPI contribution or
    cluster placement move, piece by piece (``None``: none)."""
    day = start - 1
    rule_features = _rule_features(processor)
    daily = bool(rule_features & DURATION_FEATURES)
    expiries = window_expiry_days(state["f"], day, bool(rule_features & _SEVEN_DAY), end)
    bounds = [start, *(d for d in expiries if d > start), end]
    previous = {
        k: {"current": v["current"], "since_ms": v["since_ms"]} for k, v in state["seg"].items()
    }
    model = processor.churn_model(churn_params)
    tracker = processor.tracker
    for lo, hi in itertools.pairwise(bounds):
        piece = _Piece(processor, state, lo, hi, read_features(state["f"], lo * MS_PER_DAY))
        found: list[tuple[int | None, str]] = [
            (piece.rules_day(previous, daily), "rules"),
            (piece.churn_day(model), "churn"),
        ]
        if tracker is not None:
            found.append((piece.kpi_day(tracker), "kpi"))
        if assigner is not None:
            found.append((_cluster_day(assigner, state, piece.base, lo, hi), "cluster"))
        hits = [(d, reason) for d, reason in found if d is not None]
        if hits:
            return min(hits)
    return None, ""
