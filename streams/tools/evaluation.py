"""Offline evaluation of the churn-risk stream: would a retention team have acted in time?

``segmenter evaluate`` replays a history in event-time order through the
worker's own churn code -- :mod:`models.dedup`, :mod:`models.features`,
:meth:`models.processing.CustomerProcessor.churn_step` (the published
:class:`models.churn_model.ChurnModel`, outcome snapshots, the level
hysteresis) at every midnight for every customer as the worker's sweep does,
and the single churn learner (:class:`streams.worker.churn_learner.ChurnLearnerHost`)
learning the matured outcomes and refitting BG/NBD and Pareto/NBD in stream
time -- and records every churn-level change (the ``churn-risk`` events the
worker would have emitted). No Kafka is involved.

At each cut-off date it ranks the customers by their churn score and compares
the ranking with who actually churned afterwards; in the same run it does the
same for recency alone (:func:`models.churn.recency_baseline_score`) and for
BG/NBD and Pareto/NBD fitted in batch on the calibration data
(:mod:`streams.tools.btyd_baselines`). The recorded level changes give the lead
time of the ``high`` events and the false-alarm rate. ``docs/evaluation.md``
defines every figure.

Two replay modes give the same scores at the cut-off and the same churn-level
changes up to intra-day detail:

``fast`` (default)
    Every known customer is evaluated at the start of every UTC day (the
    sweep: snapshots, outcomes, levels) and, when they had events that day,
    once more after their last event of the day. No rule segments, no
    clusters (they do not influence churn).
``exact``
    :meth:`models.processing.CustomerProcessor.handle` for every event and,
    at every UTC midnight of the stream clock, the worker's sweep
    (``due_for_review`` / ``review``) for every customer: the worker's code
    path, rule segments included. Slower; used by the tests to check the fast
    mode.

Examples
--------
>>> from streams.tools.simulator import Simulation
>>> report = evaluate_simulation(Simulation(customers=60, days=50, seed=3), horizon_days=20)
>>> report.n_customers == report.n_churners + report.n_non_churners
True
>>> 0.0 <= report.score.auc <= 1.0
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models import dedup, features
from models.btyd_summary import BTYDSummary
from models.churn import (
    DEFAULT_THRESHOLDS,
    ChurnScorer,
    LevelThresholds,
    churn_level,
    level_thresholds,
    precision_at_top,
    recency_baseline_score,
    roc_auc,
)
from models.churn_model import FEATURES, PRIOR_WEIGHTS, ChurnModel
from models.churn_outcomes import ChurnTracking
from models.customer import CustomerState, new_state
from models.eventtime import MS_PER_DAY, format_ts, parse_ts
from models.processing import CustomerProcessor, Result, btyd_row
from models.rules import RuleEngine, RulesConfig
from models.topics import BEHAVIOUR_TOPICS, FEATURE_TOPICS
from streams.tools.histories import read_history
from streams.tools.simulator import Simulation
from streams.worker.churn_learner import ChurnLearnerHost

__all__ = [
    "ChurnEvent",
    "EvaluationReport",
    "Ranking",
    "ReplayResult",
    "dataset_splits",
    "evaluate_dataset",
    "evaluate_events",
    "evaluate_history",
    "evaluate_simulation",
    "evaluate_splits",
    "history_splits",
    "read_history",
    "replay",
    "report_from_replay",
]

DEFAULT_DEDUP_WINDOW_MS = 7 * MS_PER_DAY


@dataclass(frozen=True, slots=True)
class ChurnEvent:
    """One churn-level change, as the worker would emit it on ``churn-risk``."""

    customer_id: str
    ts: int  # epoch ms (event time)
    level: str
    previous_level: str | None
    score: float


class _Customer:
    """Replay state of one customer: the worker's table value (``state``) and the
    time of their last event today (fast mode)."""

    __slots__ = ("active_ts", "state")

    def __init__(self) -> None:
        self.state: CustomerState = new_state()
        self.active_ts: int | None = None  # last event ts of the current day, if active today


@dataclass
class ReplayResult:
    """What a replay observed: level changes, scores at the cut-off, activity."""

    churn_events: list[ChurnEvent]
    cutoff_ms: int
    # customer -> (churn score, recency-baseline score, hand-set score) as of the cut-off
    cutoff_scores: dict[str, tuple[float, float, float]]
    # customer -> last behavioural event ts before the cut-off
    last_activity_before_cutoff: dict[str, int]
    # customer -> first behavioural event ts at or after the cut-off
    first_activity_after_cutoff: dict[str, int]
    # customer -> last behavioural event ts in the whole history
    last_activity: dict[str, int]
    end_ms: int  # the stream clock at the end of the replay
    n_events: int
    n_rejected: dict[str, int]
    n_scored: int
    mode: str
    # customer -> first purchase ts at or after the cut-off
    first_purchase_after_cutoff: dict[str, int] = field(default_factory=dict)
    # customer -> (frequency, recency, T) at the cut-off, buyers only (batch BTYD input)
    cutoff_btyd: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    # the streaming churn model the cut-off scores were computed with (ChurnModel.to_dict)
    cutoff_model: dict[str, Any] = field(default_factory=dict)
    # (day, revision, learned, outcomes learnt) of every model the learner published
    publications: list[tuple[int, int, bool, int]] = field(default_factory=list)
    # every cut-off's scores, BTYD summaries and model (for :meth:`at`)
    cutoff_states: dict[int, _CutoffState] = field(default_factory=dict)
    # customer -> behavioural / purchase event times, in replay order
    activity: dict[str, list[int]] = field(default_factory=dict)
    purchases: dict[str, list[int]] = field(default_factory=dict)
    # whether every customer was evaluated at every midnight (level figures are complete)
    levels: bool = True
    # the level changes other thresholds (or the hand-set score) would have made,
    # computed on the same scorings: name -> events
    shadow_events: dict[str, list[ChurnEvent]] = field(default_factory=dict)

    def at(self, cutoff_ms: int) -> ReplayResult:
        """The same replay seen from another of its cut-offs."""
        state = self.cutoff_states[cutoff_ms]
        last_before: dict[str, int] = {}
        first_after: dict[str, int] = {}
        for cid, times in self.activity.items():
            before = [t for t in times if t < cutoff_ms]
            after = [t for t in times if t >= cutoff_ms]
            if before:
                last_before[cid] = max(before)
            if after:
                first_after[cid] = min(after)
        first_purchase = {
            cid: min(after)
            for cid, times in self.purchases.items()
            if (after := [t for t in times if t >= cutoff_ms])
        }
        return replace(
            self,
            cutoff_ms=cutoff_ms,
            cutoff_scores=state.scores,
            cutoff_btyd=state.btyd,
            cutoff_model=state.model,
            last_activity_before_cutoff=last_before,
            first_activity_after_cutoff=first_after,
            first_purchase_after_cutoff=first_purchase,
        )


@dataclass
class _CutoffState:
    # customer -> (streaming score, recency score, hand-set score)
    scores: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    btyd: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)


def _ts(event: dict[str, Any]) -> int:
    ts = event["ts"]
    return ts if type(ts) is int else parse_ts(ts)


#: Name of the shadow level track of the hand-set score (the prior weights) at the
#: old thresholds, computed on the same scorings as the streaming model.
HAND_SET = "hand-set score"


class _ValuesModel(ChurnModel):
    """The published model, remembering the feature values of its last score.

    The replay reads them to compute the hand-set score (the prior weights
    over the same values) without evaluating the features twice.
    """

    last_values: dict[str, float] | None = None

    def score(self, features: Any, explain: bool = True) -> Any:
        result = super().score(features, explain)
        self.last_values = result.values
        return result


def _values_model(model: ChurnModel) -> _ValuesModel:
    return _ValuesModel.from_dict(model.to_dict(), scorer=model.scorer)  # type: ignore[return-value]


def _hand_set(values: dict[str, float]) -> float:
    """The hand-set score of a feature-value dict: the prior weights and bias."""
    z = _PRIOR_BIAS + sum(_PRIOR[i] * values[name] for i, name in enumerate(FEATURES))
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


_PRIOR = [PRIOR_WEIGHTS[name] for name in FEATURES]
_PRIOR_BIAS = ChurnModel().bias


def replay(
    stream: Iterable[tuple[str, dict[str, Any]]],
    cutoff_ms: int,
    *,
    scorer: ChurnScorer | None = None,
    mode: str = "fast",
    dedup_window_ms: int = DEFAULT_DEDUP_WINDOW_MS,
    tracking: ChurnTracking | None = None,
    learner: ChurnLearnerHost | None = None,
    learning: bool = True,
    extra_cutoffs: Sequence[int] = (),
    score_until_ms: int | None = None,
    levels: bool = True,
    thresholds: LevelThresholds = DEFAULT_THRESHOLDS,
    shadow_thresholds: Mapping[str, LevelThresholds] | None = None,
    warmup_days: int = 90,
) -> ReplayResult:
    """Replay ``(topic, event)`` pairs (non-decreasing ``ts``) through the churn logic.


    Events of topics other than the five feature topics (e.g. ``privacy``) are
    skipped and counted in ``n_rejected``. ``ts`` may be epoch ms or RFC 3339.
    The stream clock is the largest event time seen; the sweep runs at every
    UTC midnight it passes, up to the day of the last event. Scores at
    ``cutoff_ms`` are read from the state of everything before ``cutoff_ms``.

    Churn is the worker's: :meth:`CustomerProcessor.churn_step` scores with
    the current :class:`ChurnModel`, takes snapshots and releases matured
    outcomes at every midnight; ``learner`` (a :class:`ChurnLearnerHost`, by
    default one asking ``tracking``'s question, with ``warmup_days``) learns
    them after each midnight pass, refits BG/NBD and Pareto/NBD on the
    customers' summary table in stream time, and the model it publishes
    scores from then on -- what the worker does, without Kafka's delivery
    delays. ``learning=False`` keeps the prior model throughout.
    ``extra_cutoffs`` are further cut-offs read in the same replay
    (:meth:`ReplayResult.at`). From ``score_until_ms`` on (at or after the
    last cut-off) events are only recorded for the labels: nothing is scored,
    so churn-risk events and lead times stop there.

    ``levels=False`` (fast mode only) evaluates a silent customer at a
    midnight only when their outcome tracking is due (a snapshot or a release,
    :meth:`ChurnTracking.due`): the learner sees the same outcomes in the same
    order, so the model and the scores at the cut-offs are exactly those of
    the full sweep (tested), but the churn-risk events of silent customers are
    not computed (no lead-time figures). ``thresholds`` are the levels'
    (``SEGMENTER_CHURN_*_THRESHOLD``); ``shadow_thresholds`` name further
    thresholds whose level changes are computed on the same scorings
    (``shadow_events``), and the hand-set score's levels at the old thresholds
    are tracked as :data:`HAND_SET`.

    Events should come in event-time order (as :func:`read_history` and
    :meth:`Simulation.events` give them); an out-of-order event is applied to
    the features all the same (they are order-independent) unless the dedup
    memory calls it ``late``, as in the worker.

    Raises
    ------
    ValueError
        When ``mode`` is unknown, or ``levels=False`` in exact mode.
    """
    if mode not in ("fast", "exact"):
        raise ValueError(f"mode must be 'fast' or 'exact', got {mode!r}")
    exact = mode == "exact"
    if exact and not levels:
        raise ValueError("the exact mode evaluates every customer at every midnight")
    scorer = scorer or ChurnScorer()
    tracking = tracking or ChurnTracking()
    processor = CustomerProcessor(
        rules=RuleEngine(RulesConfig()),
        scorer=scorer,
        dedup_window_ms=dedup_window_ms,
        tracking=tracking,
        thresholds=thresholds,
    )
    if learner is None and learning:
        learner = ChurnLearnerHost(
            horizon_days=tracking.horizon_days,
            label=tracking.label,
            offset_days=tracking.offset_days,
            warmup_days=warmup_days,
            scorer=scorer,
        )
    cutoffs = sorted({cutoff_ms, *extra_cutoffs})
    if score_until_ms is not None and score_until_ms < max(cutoffs):
        raise ValueError("score_until_ms must not be before the last cut-off")
    run = _Replay(
        processor,
        learner,
        tracking,
        exact=exact,
        levels=levels,
        cutoffs=cutoffs,
        shadows=_shadow_tracks(shadow_thresholds) if levels and not exact else {},
        dedup_window_ms=dedup_window_ms,
        score_until_ms=score_until_ms,
    )
    feed = run.feed
    for topic, event in stream:
        feed(topic, event)
    return run.finish(cutoff_ms, mode).at(cutoff_ms)


#: A shadow level track: (thresholds, of the hand-set score?, levels, events).
_Shadow = tuple[LevelThresholds, bool, dict[str, str], list[ChurnEvent]]


def _shadow_tracks(shadow_thresholds: Mapping[str, LevelThresholds] | None) -> dict[str, _Shadow]:
    """The hand-set score's level track at the old thresholds, then one per named thresholds."""
    shadows: dict[str, _Shadow] = {HAND_SET: (DEFAULT_THRESHOLDS, True, {}, [])}
    for name, thr in (shadow_thresholds or {}).items():
        shadows[name] = (thr, False, {}, [])
    return shadows


class _Replay:
    """The state of one :func:`replay` and the worker's steps on it.

    The fast mode's work per event is :meth:`_apply_fast`, the worker's
    sweep at a midnight :meth:`start_day`; both modes share the stream clock,
    the cut-offs, the learner and the activity records the labels come from.
    """

    def __init__(
        self,
        processor: CustomerProcessor,
        learner: ChurnLearnerHost | None,
        tracking: ChurnTracking,
        *,
        exact: bool,
        levels: bool,
        cutoffs: list[int],
        shadows: dict[str, _Shadow],
        dedup_window_ms: int,
        score_until_ms: int | None,
    ) -> None:
        self.processor = processor
        self.learner = learner
        self.due = tracking.due
        self.exact = exact
        self.levels = levels
        self.shadows = shadows
        self.dedup_window_ms = dedup_window_ms
        self.score_until_ms = score_until_ms
        self.model = _values_model(processor.churn_model(None))
        self.customers: dict[str, _Customer] = {}
        self.churn_events: list[ChurnEvent] = []
        self.states = {c: _CutoffState() for c in cutoffs}
        self.pending_cutoffs = list(cutoffs)  # not taken yet, earliest first
        self.activity: dict[str, list[int]] = {}
        self.purchases: dict[str, list[int]] = {}
        self.publications: list[tuple[int, int, bool, int]] = []
        self.last_activity: dict[str, int] = {}
        self.active_today: list[str] = []
        self.rejected: dict[str, int] = {}
        self.labels: list[list[Any]] = []
        self.n_events = 0
        self.n_scored = 0
        self.current_day: int | None = None
        self.clock = 0

    # ------------------------------------------------------------ the events
    def feed(self, topic: str, event: dict[str, Any]) -> None:
        """Apply one event of the stream (after the midnights it passes)."""
        if topic not in FEATURE_TOPICS:
            self._reject(f"{topic}:skipped")
            return
        ts = _ts(event)
        if self.score_until_ms is not None and ts >= self.score_until_ms:
            self._follow_up(topic, event, ts)
            return
        day = ts // MS_PER_DAY
        if self.current_day is None:
            self.current_day = day
            self.take_cutoffs(day)
        elif day > self.current_day:
            self._advance(day)
        if ts > self.clock:
            self.clock = ts
        if type(event["ts"]) is not int:
            event = dict(event, ts=ts)
        cid = event["customer_id"]
        cust = self.customers.get(cid)
        new = cust is None
        if cust is None:
            cust = _Customer()
        if self.exact:
            applied = self._apply_exact(cid, cust, topic, event)
        else:
            applied = self._apply_fast(cid, cust, topic, event, ts, day)
        if not applied:
            return
        if new:
            self.customers[cid] = cust
        self.n_events += 1
        self._note_activity(topic, cid, ts)

    def _follow_up(self, topic: str, event: dict[str, Any], ts: int) -> None:
        """Record an event after ``score_until_ms``: for the outcome, not the scores."""
        assert self.score_until_ms is not None
        # The stream clock still reaches the last cut-off's midnight first.
        last_day = self.score_until_ms // MS_PER_DAY
        if self.current_day is not None and self.current_day < last_day:
            self._advance(last_day)
        self._note_activity(topic, event["customer_id"], ts)
        self.clock = max(self.clock, ts)
        self.n_events += 1

    def _apply_exact(self, cid: str, cust: _Customer, topic: str, event: dict[str, Any]) -> bool:
        """The worker's handling of an event; False when it was rejected."""
        result = self.processor.handle(cid, cust.state, topic, event, None, self.model)
        if result.status != "new":
            self._reject(result.status)
            return False
        assert result.state is not None
        cust.state = result.state
        self._record(cid, result.churn_events, self.clock)
        self.labels.extend(result.churn_labels)
        self.n_scored += 1
        return True

    def _apply_fast(
        self, cid: str, cust: _Customer, topic: str, event: dict[str, Any], ts: int, day: int
    ) -> bool:
        """Dedup and features only; the customer is scored after their last event of the day."""
        st = cust.state
        verdict = dedup.check(
            st["dedup"], topic, event["event_id"], ts, window_ms=self.dedup_window_ms
        )
        if verdict != "new":
            self._reject("duplicate_or_late")
            return False
        self.processor.observe_outcome(st, topic, ts)
        features.apply_event(st["f"], topic, event)
        st.setdefault("eval_day", day)
        if cust.active_ts is None:
            self.active_today.append(cid)
        cust.active_ts = ts
        return True

    def _reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def _note_activity(self, topic: str, cid: str, ts: int) -> None:
        """Remember a behavioural event's time: the labels are drawn from these."""
        if topic in BEHAVIOUR_TOPICS:
            self.activity.setdefault(cid, []).append(ts)
            if topic == "purchases":
                self.purchases.setdefault(cid, []).append(ts)
            self.last_activity[cid] = ts

    # ------------------------------------------------------------ the scoring
    def _record(self, cid: str, events: Iterable[dict[str, Any]], at_ms: int) -> None:
        for ev in events:
            self.churn_events.append(
                ChurnEvent(cid, at_ms, ev["level"], ev["previous_level"], ev["score"])
            )

    def _step(self, cid: str, cust: _Customer, at_ms: int, day_start: bool) -> None:
        """The churn part of the worker's evaluation, at ``at_ms`` (fast mode)."""
        self.n_scored += 1
        result = Result("new", cust.state)
        cause = f"day:{at_ms // MS_PER_DAY}" if day_start else "replay"
        feats = features.read_features(cust.state["f"], at_ms)
        event = self.processor.churn_step(
            cid, cust.state, feats, at_ms, self.model, cause, day_start, result
        )
        if event is not None:
            self._record(cid, (event,), at_ms)
        self.labels.extend(result.churn_labels)
        if self.shadows:
            self._track_shadows(cid, cust.state["churn"]["score"], at_ms)

    def _track_shadows(self, cid: str, score: float, at_ms: int) -> None:
        """The level changes the shadow thresholds would have made on this scoring."""
        assert self.model.last_values is not None
        for thr, hand_set, track, events in self.shadows.values():
            value = _hand_set(self.model.last_values) if hand_set else score
            before = track.get(cid)
            level = churn_level(value, before, thr)
            if level != before:
                track[cid] = level
                events.append(ChurnEvent(cid, at_ms, level, before, value))

    def _score_active(self) -> None:
        """Score the customers active on the current day as of their last event then."""
        for cid in self.active_today:
            cust = self.customers[cid]
            assert cust.active_ts is not None
            self._step(cid, cust, cust.active_ts, False)
            cust.active_ts = None
        self.active_today = []

    # ------------------------------------------------------------ midnights
    def _advance(self, day: int) -> None:
        """Pass every midnight up to the start of ``day``."""
        assert self.current_day is not None
        for d in range(self.current_day + 1, day + 1):
            self.start_day(d)
        self.current_day = day

    def start_day(self, day: int) -> None:
        """The stream clock reaches the midnight starting ``day``."""
        if self.exact:
            self._exact_sweep(day)
        else:
            self._score_active()
            self._fast_sweep(day)
        self.take_cutoffs(day)
        self._learn(day)

    def _exact_sweep(self, day: int) -> None:
        """The worker's sweep: review every customer due at this midnight."""
        processor = self.processor
        midnight = day * MS_PER_DAY
        for cid, cust in self.customers.items():
            st = cust.state
            if processor.due_for_review(st, day):
                self.n_scored += 1
                result = processor.review(cid, st, day, None, self.model)
                self._record(cid, result.churn_events, midnight)
                self.labels.extend(result.churn_labels)

    def _fast_sweep(self, day: int) -> None:
        """Everyone at the start of the day (snapshots, outcomes, levels).

        Without levels, only those whose outcome tracking is due today.
        """
        midnight = day * MS_PER_DAY
        for cid, cust in self.customers.items():
            st = cust.state
            if st.get("eval_day", day) < day:
                if self.levels or self.due(st.get("churn") or {}, cid, day):
                    self._step(cid, cust, midnight, True)
                st["eval_day"] = day

    def take_cutoffs(self, day: int) -> None:
        """Read every cut-off at or before the start of ``day`` not read yet."""
        while self.pending_cutoffs and self.pending_cutoffs[0] // MS_PER_DAY <= day:
            self._read_cutoff(self.pending_cutoffs.pop(0))

    def _read_cutoff(self, at: int) -> None:
        """Every customer's scores and BTYD summary at the cut-off ``at``."""
        model = self.model
        state = self.states[at]
        state.model = model.to_dict()
        for cid, cust in self.customers.items():
            feats = features.read_features(cust.state["f"], at)
            scored = model.score(feats, explain=False)
            state.scores[cid] = (
                scored.score,
                recency_baseline_score(feats),
                _hand_set(scored.values),
            )
            if feats.get("T") is not None:
                state.btyd[cid] = (feats["frequency"], feats["recency"], feats["T"])

    def _base_summary(self) -> BTYDSummary:
        # What the sweeps publish: every customer's row, summed.
        summary = BTYDSummary()
        for cust in self.customers.values():
            row = btyd_row(cust.state)
            if row is not None:
                summary.add(*row)
        return summary

    def _learn(self, day: int) -> None:
        """Hand the day's matured outcomes to the learner; score with what it publishes."""
        labels, self.labels = self.labels, []
        learner = self.learner
        if learner is None:
            return
        learner.learn([{"churn": label} for label in labels])
        if learner.tick(day, self._base_summary):
            self.model = _values_model(learner.publish())
            assert learner.learner is not None
            self.publications.append(
                (day, self.model.revision, self.model.learned, learner.learner.n_labels)
            )

    # ------------------------------------------------------------ the end
    def finish(self, cutoff_ms: int, mode: str) -> ReplayResult:
        """What the replay observed (cut-off figures still to be read, :meth:`ReplayResult.at`)."""
        # End of the stream: flush the last day (no further midnight is reached).
        if not self.exact:
            self._score_active()
        self.take_cutoffs(max(self.states) // MS_PER_DAY)  # cut-offs after the last event
        return ReplayResult(
            churn_events=self.churn_events,
            cutoff_ms=cutoff_ms,
            cutoff_scores={},
            last_activity_before_cutoff={},
            first_activity_after_cutoff={},
            last_activity=self.last_activity,
            end_ms=self.clock,
            n_events=self.n_events,
            n_rejected=self.rejected,
            n_scored=self.n_scored,
            mode=mode,
            publications=self.publications,
            cutoff_states=self.states,
            activity=self.activity,
            purchases=self.purchases,
            levels=self.levels,
            shadow_events={name: events for name, (_, _, _, events) in self.shadows.items()},
        )


# --------------------------------------------------------------------------- report
@dataclass(frozen=True)
class Ranking:
    """How well one score ranks the population at the cut-off."""

    auc: float
    precision_at_decile: float
    lift: float  # precision_at_decile / base rate
    brier: float | None = None  # for a probability of the evaluated outcome


@dataclass(frozen=True)
class EvaluationReport:
    """The figures of one evaluation run (see ``docs/evaluation.md``)."""

    source: str
    mode: str
    cutoff: str  # YYYY-MM-DD
    horizon_days: int
    active_days: int
    n_customers: int
    n_churners: int
    n_non_churners: int
    base_rate: float
    decile_size: int
    score: Ranking
    baseline: Ranking
    # the harder sub-population: customers with activity in the last 14 days
    recent_n_customers: int
    recent_base_rate: float
    recent_score: Ranking | None
    recent_baseline: Ranking | None
    recent_hand_set: Ranking | None
    # lead time of the first `high` event of the churn, in days (negative = before
    # the last activity); churners flagged at all, and the distribution
    churners_flagged: int
    lead_days_median: float | None
    lead_days_p25: float | None
    lead_days_p75: float | None
    flagged_within_14d: float | None
    flagged_within_14d_of: int
    flagged_within_30d: float | None
    flagged_within_30d_of: int
    false_alarm_window_days: int
    false_alarms: int
    false_alarm_rate: float
    high_at_cutoff_non_churners: int
    churn_events: int
    churn_events_by_level: dict[str, int]
    n_events: int
    n_rejected: dict[str, int]
    n_scored: int
    runtime_seconds: float
    notes: list[str] = field(default_factory=list)
    label: str = "activity"  # what churn means: no purchase, or no activity
    model_horizon_days: int = 30  # H of the streaming model
    # recency alone and the batch BTYD models, ranked on the same population
    comparisons: dict[str, Ranking] = field(default_factory=dict)
    # the streaming model at the cut-off: revision, learned, outcomes, weights, BTYD fit
    model: dict[str, Any] = field(default_factory=dict)
    publications: int = 0  # models the learner published during the replay
    levels: bool = True  # whether the level figures were computed (every customer, every day)
    alarm_precision: float | None = None  # of this month's high events, the share that churned
    # the same figures for the hand-set score's levels and for other thresholds
    level_tradeoffs: dict[str, LevelFigures] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


def _ranking(
    scores: np.ndarray, labels: np.ndarray, base_rate: float, probability: bool = False
) -> Ranking:
    auc = roc_auc(scores, labels)
    precision = precision_at_top(scores, labels, 0.1)
    brier = float(np.mean((scores - labels) ** 2)) if probability else None
    return Ranking(
        auc=round(auc, 4),
        precision_at_decile=round(precision, 4),
        lift=round(precision / base_rate, 3) if base_rate > 0 else float("nan"),
        brier=None if brier is None else round(brier, 4),
    )


#: Name of the streaming score's row in reports.
STREAMING = "streaming churn model"
#: Name of the recency-only baseline's row.
RECENCY = "recency only"


def _model_summary(model: dict[str, Any]) -> dict[str, Any]:
    """The parts of a published ChurnModel a report shows."""
    if not model:
        return {}
    btyd = model.get("btyd") or {}
    return {
        "version": model.get("version"),
        "learned": model.get("learned"),
        "horizon_days": model.get("horizon_days"),
        "label": model.get("label"),
        "weights": {k: round(v, 3) for k, v in (model.get("weights") or {}).items()},
        "bias": round(float(model.get("bias", 0.0)), 3),
        "validation": model.get("validation") or {},
        "bgnbd": {
            k: round(v, 4) for k, v in (btyd.get("bgnbd") or {}).items() if k in "r alpha a b"
        },
        "pareto": {
            k: round(v, 4)
            for k, v in (btyd.get("pareto") or {}).items()
            if k in ("r", "alpha", "s", "beta")
        },
        "btyd_fit_day": btyd.get("day"),
    }


def _quantiles(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    q = np.quantile(np.asarray(values, dtype=float), [0.25, 0.5, 0.75])
    return round(float(q[1]), 2), round(float(q[0]), 2), round(float(q[2]), 2)


@dataclass(frozen=True)
class LevelFigures:
    """What a retention team sees of one track of churn-risk level changes."""

    churners_flagged: int
    lead_days_median: float | None
    lead_days_p25: float | None
    lead_days_p75: float | None
    flagged_within_14d: float | None
    flagged_within_14d_of: int
    flagged_within_30d: float | None
    flagged_within_30d_of: int
    false_alarms: int  # non-churners sent to high in the window before the cut-off
    false_alarm_rate: float  # ... as a share of all non-churners
    high_at_cutoff_non_churners: int
    # of the population's customers sent to high in the window before the cut-off,
    # the share who churned (the precision of this month's alarms)
    alarm_precision: float | None
    alarms: int


def level_figures(
    events: Sequence[ChurnEvent],
    result: ReplayResult,
    labels: Mapping[str, bool],
    population: Sequence[str],
    *,
    false_alarm_days: int = 30,
) -> LevelFigures:
    """Lead time, flagged share and false alarms of one track of level changes.

    Lead time of a churner: ``ts of the high event - ts of their last activity``
    in days, where the high event is the start of the ``high`` spell the
    customer is in at the end of the replay (a spell they recovered from does
    not count). False alarms: non-churners sent to ``high`` in the
    ``false_alarm_days`` before the cut-off.
    """
    cutoff = result.cutoff_ms
    by_customer: dict[str, list[ChurnEvent]] = {}
    for ev in events:
        by_customer.setdefault(ev.customer_id, []).append(ev)
    leads: list[float] = []
    within = {14: [0, 0], 30: [0, 0]}  # days -> [flagged in time, observable]
    flagged = 0
    window_start = cutoff - false_alarm_days * MS_PER_DAY
    alarmed: set[str] = set()
    alarmed_churners = 0
    high_at_cutoff = 0
    for cid in population:
        churned = labels[cid]
        history = by_customer.get(cid, ())
        if any(ev.level == "high" and window_start <= ev.ts < cutoff for ev in history):
            if churned:
                alarmed_churners += 1
            else:
                alarmed.add(cid)
        if not churned:
            level_at_cutoff = None
            for ev in history:
                if ev.ts >= cutoff:
                    break
                level_at_cutoff = ev.level
            high_at_cutoff += level_at_cutoff == "high"
            continue
        last = result.last_activity.get(cid, result.last_activity_before_cutoff[cid])
        entry: int | None = None
        for ev in history:
            if ev.level == "high":
                if entry is None:
                    entry = ev.ts
            else:
                entry = None
        lead = None if entry is None else (entry - last) / MS_PER_DAY
        if lead is not None:
            flagged += 1
            leads.append(lead)
        for days, counts in within.items():
            if result.end_ms - last >= days * MS_PER_DAY:
                counts[1] += 1
                if lead is not None and lead <= days:
                    counts[0] += 1
    n_non = sum(1 for cid in population if not labels[cid])
    median, p25, p75 = _quantiles(leads)
    alarms = len(alarmed) + alarmed_churners
    return LevelFigures(
        churners_flagged=flagged,
        lead_days_median=median,
        lead_days_p25=p25,
        lead_days_p75=p75,
        flagged_within_14d=round(within[14][0] / within[14][1], 4) if within[14][1] else None,
        flagged_within_14d_of=within[14][1],
        flagged_within_30d=round(within[30][0] / within[30][1], 4) if within[30][1] else None,
        flagged_within_30d_of=within[30][1],
        false_alarms=len(alarmed),
        false_alarm_rate=round(len(alarmed) / n_non, 4) if n_non else 0.0,
        high_at_cutoff_non_churners=high_at_cutoff,
        alarm_precision=round(alarmed_churners / alarms, 4) if alarms else None,
        alarms=alarms,
    )


def report_from_replay(
    result: ReplayResult,
    labels: dict[str, bool],
    *,
    source: str,
    horizon_days: int,
    active_days: int,
    started: float,
    false_alarm_days: int = 30,
    recent_days: int = 14,
    notes: Sequence[str] = (),
    label: str = "activity",
    model_horizon_days: int | None = None,
    batch_baselines: bool = True,
    offset_days: int = 0,
) -> EvaluationReport:
    """Compute the report from a replay and the churn label of every customer.

    ``offset_days`` is the offset of the evaluated question (0 for "no purchase
    in the horizon from the cut-off on"; the horizon for the simulator's
    "stops within the horizon"): the streaming score has a Brier score when it
    is the probability of that very question.

    ``labels`` holds the population: customers active in the ``active_days``
    before the cut-off, mapped to whether they churned. With
    ``batch_baselines``, BG/NBD and Pareto/NBD are fitted on every buyer's
    summary at the cut-off (:mod:`streams.tools.btyd_baselines`) and ranked on the
    same population, in the same run.
    """
    model_horizon = horizon_days if model_horizon_days is None else model_horizon_days
    cutoff = result.cutoff_ms
    population = sorted(labels)
    y = np.array([labels[c] for c in population], dtype=bool)
    if y.size == 0 or y.all() or not y.any():
        raise ValueError(
            f"need churners and non-churners among the {y.size} customers active in the "
            f"{active_days} days before the cut-off; choose another --cutoff or --horizon"
        )
    scores = np.array([result.cutoff_scores[c][0] for c in population])
    base = np.array([result.cutoff_scores[c][1] for c in population])
    hand = np.array([result.cutoff_scores[c][2] for c in population])
    base_rate = float(y.mean())

    recent_mask = np.array(
        [
            result.last_activity_before_cutoff[c] >= cutoff - recent_days * MS_PER_DAY
            for c in population
        ]
    )
    y_recent = y[recent_mask]
    recent_rate = float(y_recent.mean()) if y_recent.size else 0.0
    recent_ok = y_recent.size > 0 and y_recent.any() and not y_recent.all()

    n_non = int((~y).sum())
    by_level: dict[str, int] = {"low": 0, "medium": 0, "high": 0}
    for ev in result.churn_events:
        by_level[ev.level] = by_level.get(ev.level, 0) + 1
    figures = level_figures(
        result.churn_events, result, labels, population, false_alarm_days=false_alarm_days
    )
    tradeoffs = {
        name: level_figures(events, result, labels, population, false_alarm_days=false_alarm_days)
        for name, events in result.shadow_events.items()
    }
    # The streaming score is a probability of this very outcome when its
    # horizon and label are the evaluation's: then it has a Brier score.
    same_question = (
        model_horizon == horizon_days
        and result.cutoff_model.get("label") == label
        and int(result.cutoff_model.get("offset_days", 0)) == offset_days
    )
    streaming = _ranking(scores, y, base_rate, probability=same_question)
    comparisons = {HAND_SET: _ranking(hand, y, base_rate), RECENCY: _ranking(base, y, base_rate)}
    buyers = len(result.cutoff_btyd)
    if batch_baselines and buyers >= 50:
        from streams.tools.btyd_baselines import batch_btyd_scores

        for batch in batch_btyd_scores(result.cutoff_btyd, population, horizon_days):
            comparisons[batch.name] = _ranking(
                batch.scores, y, base_rate, probability=batch.probability and label == "purchase"
            )
    return EvaluationReport(
        source=source,
        mode=result.mode,
        cutoff=datetime.fromtimestamp(cutoff / 1000, UTC).date().isoformat(),
        horizon_days=horizon_days,
        active_days=active_days,
        n_customers=int(y.size),
        n_churners=int(y.sum()),
        n_non_churners=n_non,
        base_rate=round(base_rate, 4),
        decile_size=max(1, math.ceil(0.1 * y.size - 1e-9)),
        score=streaming,
        baseline=comparisons[RECENCY],
        recent_n_customers=int(y_recent.size),
        recent_base_rate=round(recent_rate, 4),
        recent_score=_ranking(scores[recent_mask], y_recent, recent_rate) if recent_ok else None,
        recent_baseline=_ranking(base[recent_mask], y_recent, recent_rate) if recent_ok else None,
        recent_hand_set=_ranking(hand[recent_mask], y_recent, recent_rate) if recent_ok else None,
        churners_flagged=figures.churners_flagged,
        lead_days_median=figures.lead_days_median,
        lead_days_p25=figures.lead_days_p25,
        lead_days_p75=figures.lead_days_p75,
        flagged_within_14d=figures.flagged_within_14d,
        flagged_within_14d_of=figures.flagged_within_14d_of,
        flagged_within_30d=figures.flagged_within_30d,
        flagged_within_30d_of=figures.flagged_within_30d_of,
        false_alarm_window_days=false_alarm_days,
        false_alarms=figures.false_alarms,
        false_alarm_rate=figures.false_alarm_rate,
        high_at_cutoff_non_churners=figures.high_at_cutoff_non_churners,
        churn_events=len(result.churn_events),
        churn_events_by_level=by_level,
        n_events=result.n_events,
        n_rejected=dict(result.n_rejected),
        n_scored=result.n_scored,
        runtime_seconds=round(time.perf_counter() - started, 2),
        notes=list(notes),
        label=label,
        model_horizon_days=model_horizon,
        comparisons=comparisons,
        model=_model_summary(result.cutoff_model),
        publications=len(result.publications),
        levels=result.levels,
        alarm_precision=figures.alarm_precision,
        level_tradeoffs=tradeoffs,
    )


# --------------------------------------------------------------------------- inputs
#: Thresholds whose lead time and false alarms every report with level figures
#: shows next to the configured ones, computed on the same scorings:
#: ``(medium, high)`` entry scores (the exits are 0.1 lower).
TRADEOFF_THRESHOLDS: tuple[tuple[float, float], ...] = (
    (0.2, 0.3),
    (0.3, 0.5),
    (0.4, 0.7),
    (0.5, 0.8),
)


def _shadow_thresholds(
    levels: bool, tradeoffs: Sequence[tuple[float, float]]
) -> dict[str, LevelThresholds]:
    if not levels:
        return {}
    return {f"high at {high:g}, medium at {medium:g}": level_thresholds(medium, high)
            for medium, high in tradeoffs}  # fmt: skip


def evaluate_simulation(
    sim: Simulation,
    *,
    cutoff_day: int | None = None,
    horizon_days: int = 30,
    active_days: int = 60,
    mode: str = "fast",
    scorer: ChurnScorer | None = None,
    model_horizon_days: int | None = None,
    model_offset_days: int | None = None,
    label: str = "activity",
    learning: bool = True,
    batch_baselines: bool = True,
    levels: bool = True,
    thresholds: LevelThresholds = DEFAULT_THRESHOLDS,
    warmup_days: int = 90,
    tradeoffs: Sequence[tuple[float, float]] = TRADEOFF_THRESHOLDS,
) -> EvaluationReport:
    """Evaluate on a simulated population whose churners are known.

    ``cutoff_day`` (day index from ``sim.start_ms``) defaults to
    ``sim.days - horizon_days``. Population: customers with a behavioural
    event in the ``active_days`` before the cut-off. Churner: the ground
    truth says the customer stops for good by ``cutoff_day + horizon_days``
    (``churn_day <= cutoff_day + horizon_days``, also when that was before
    the cut-off).

    The streaming model is configured for that question: no ``label``
    activity in the ``model_horizon_days`` (default: the horizon) starting
    ``model_offset_days`` (default: the horizon) after the score -- "has the
    customer stopped within the horizon, and stayed silent as long?", the
    observable form of the ground truth -- and learns from those outcomes
    during the replay (``learning``), after ``warmup_days``: every simulated
    history starts on day 0, so the windowed features of customers who signed
    up before are truncated until the 90-day window has filled.
    """
    started = time.perf_counter()
    if cutoff_day is None:
        cutoff_day = sim.days - horizon_days
    if not 0 < cutoff_day < sim.days:
        raise ValueError(f"cut-off day {cutoff_day} must lie inside the {sim.days} simulated days")
    cutoff_ms = sim.start_ms + cutoff_day * MS_PER_DAY
    offset = horizon_days if model_offset_days is None else model_offset_days
    result = replay(
        sim.events(),
        cutoff_ms,
        scorer=scorer,
        mode=mode,
        tracking=ChurnTracking(
            horizon_days=horizon_days if model_horizon_days is None else model_horizon_days,
            label=label,
            offset_days=offset,
        ),
        learning=learning,
        levels=levels,
        thresholds=thresholds,
        shadow_thresholds=_shadow_thresholds(levels and mode == "fast", tradeoffs),
        warmup_days=warmup_days,
    )
    truth = sim.ground_truth()
    lo = cutoff_ms - active_days * MS_PER_DAY
    labels = {}
    for cid, last in result.last_activity_before_cutoff.items():
        if last >= lo:
            churn_day = truth[cid]["churn_day"]
            labels[cid] = churn_day is not None and churn_day <= cutoff_day + horizon_days
    source = f"simulation: {sim.customers} customers, {sim.days} days, seed {sim.seed}"
    notes = []
    if cutoff_day + horizon_days > sim.days:
        notes.append("the horizon runs past the simulated period; late churners are not seen")
    if learning and not result.cutoff_model.get("learned"):
        notes.append(
            f"the streaming model was still the prior at the cut-off: an outcome matures "
            f"{offset + (model_horizon_days or horizon_days)} days after its snapshot and "
            f"snapshots of the first {warmup_days} days are not learnt; simulate more days"
        )
    return report_from_replay(
        result,
        labels,
        source=source,
        horizon_days=horizon_days,
        active_days=active_days,
        started=started,
        notes=notes,
        label=label,
        model_horizon_days=model_horizon_days,
        batch_baselines=batch_baselines,
        offset_days=horizon_days,
    )


def _day_ms(day: date | str) -> int:
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def evaluate_events(
    events: Sequence[tuple[str, dict[str, Any]]],
    cutoff: date | str,
    *,
    horizon_days: int = 90,
    **options: Any,
) -> EvaluationReport:
    """Evaluate on a history at one cut-off; options as :func:`evaluate_splits`."""
    return evaluate_splits(events, [(cutoff, horizon_days)], **options)[0]


def evaluate_splits(
    events: Sequence[tuple[str, dict[str, Any]]],
    splits: Sequence[tuple[date | str, int]],
    *,
    source: str,
    rejected: dict[str, int] | None = None,
    active_days: int = 60,
    mode: str = "fast",
    scorer: ChurnScorer | None = None,
    model_horizon_days: int | None = None,
    model_offset_days: int = 0,
    label: str = "purchase",
    learning: bool = True,
    batch_baselines: bool = True,
    follow_up: bool = True,
    levels: bool = True,
    thresholds: LevelThresholds = DEFAULT_THRESHOLDS,
    warmup_days: int = 90,
    tradeoffs: Sequence[tuple[float, float]] = TRADEOFF_THRESHOLDS,
) -> list[EvaluationReport]:
    """Evaluate a history (``(topic, event)`` pairs in event-time order) at several splits.

    One replay serves every ``(cut-off date, horizon days)`` split: the
    streaming model (horizon ``model_horizon_days``, default the first
    split's) learns along the whole history and is read at each cut-off.
    Population: customers with a behavioural event (purchase, browsing,
    support, feedback) in the ``active_days`` before the cut-off (00:00 UTC;
    ``active_days=0``: every customer seen before it). Churned: no purchase
    (``label="purchase"``) or no behavioural event (``"activity"``) in the
    split's horizon from the cut-off on. ``follow_up=False`` stops scoring at
    the last cut-off (faster; the later events only label the outcome, and
    the lead-time figures see no churn-risk event after the last cut-off).
    ``model_offset_days`` shifts the model's outcome window (the evaluated
    question has none: keep 0 for a like-for-like Brier score); ``levels``,
    ``thresholds`` and ``warmup_days`` as in :func:`replay`.
    """
    if not splits:
        raise ValueError("need at least one (cut-off, horizon) split")
    started = time.perf_counter()
    cutoffs = [_day_ms(cutoff) for cutoff, _ in splits]
    model_h = splits[0][1] if model_horizon_days is None else model_horizon_days
    replayed = replay(
        events,
        cutoffs[0],
        scorer=scorer,
        mode=mode,
        tracking=ChurnTracking(horizon_days=model_h, label=label, offset_days=model_offset_days),
        learning=learning,
        extra_cutoffs=cutoffs[1:],
        score_until_ms=None if follow_up else max(cutoffs),
        levels=levels,
        thresholds=thresholds,
        shadow_thresholds=_shadow_thresholds(levels and mode == "fast", tradeoffs),
        warmup_days=warmup_days,
    )
    for reason, n in (rejected or {}).items():
        replayed.n_rejected[reason] = replayed.n_rejected.get(reason, 0) + n
    reports = []
    for cutoff_ms, (_, horizon_days) in zip(cutoffs, splits, strict=True):
        result = replayed.at(cutoff_ms)
        notes = []
        end = cutoff_ms + horizon_days * MS_PER_DAY
        if result.end_ms < end - MS_PER_DAY:
            notes.append(
                f"the history ends on {format_ts(result.end_ms)[:10]}, before the end of the "
                f"{horizon_days}-day horizon: customers silent since then count as churned"
            )
        if not result.cutoff_model.get("learned"):
            notes.append(
                f"the streaming model had learnt too few outcomes by the cut-off to replace "
                f"its prior (a {model_h}-day outcome matures {model_h + model_offset_days} days "
                f"after its snapshot; snapshots of the first {warmup_days} days are not learnt)"
            )
        lo = cutoff_ms - active_days * MS_PER_DAY if active_days > 0 else -1
        after_of = (
            result.first_purchase_after_cutoff
            if label == "purchase"
            else result.first_activity_after_cutoff
        )
        labels = {}
        for cid, last in result.last_activity_before_cutoff.items():
            if last >= lo:
                after = after_of.get(cid)
                labels[cid] = after is None or after >= end
        reports.append(
            report_from_replay(
                result,
                labels,
                source=source,
                horizon_days=horizon_days,
                active_days=active_days,
                started=started,
                notes=notes,
                label=label,
                model_horizon_days=model_h,
                batch_baselines=batch_baselines,
            )
        )
    return reports


def evaluate_history(
    paths: Sequence[str | Path],
    cutoff: date | str,
    *,
    horizon_days: int = 90,
    **options: Any,
) -> EvaluationReport:
    """Evaluate on history files (:func:`streams.tools.histories.read_history`) at a cut-off.

    Options as :func:`evaluate_splits`.
    """
    return history_splits(paths, [(cutoff, horizon_days)], **options)[0]


def history_splits(
    paths: Sequence[str | Path], splits: Sequence[tuple[date | str, int]], **options: Any
) -> list[EvaluationReport]:
    """:func:`evaluate_splits` on history files."""
    events, rejected = read_history(paths)
    names = ", ".join(Path(p).name for p in paths)
    return evaluate_splits(events, splits, source=f"history: {names}", rejected=rejected, **options)


def evaluate_dataset(
    name: str, cutoff: date | str, *, horizon_days: int = 90, **options: Any
) -> EvaluationReport:
    """Evaluate on a public data set an installed package ships (``cdnow``, ``cdnow-sample``)."""
    return dataset_splits(name, [(cutoff, horizon_days)], **options)[0]


def dataset_splits(
    name: str, splits: Sequence[tuple[date | str, int]], **options: Any
) -> list[EvaluationReport]:
    """:func:`evaluate_splits` on a public data set (:data:`streams.tools.histories.DATASETS`)."""
    from streams.tools.histories import DATASETS, dataset_events

    events, rejected = dataset_events(name)
    return evaluate_splits(events, splits, source=DATASETS[name][1], rejected=rejected, **options)


def simulation_day(sim: Simulation, day: date | str) -> int:
    """Day index of the UTC date ``day`` in ``sim`` (day 0 starts at ``sim.start_ms``).

    Examples
    --------
    >>> simulation_day(Simulation(customers=1, days=10), "2026-01-31")
    30
    """
    return (_day_ms(day) - sim.start_ms) // MS_PER_DAY


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _days(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f} d"


def render_report(report: EvaluationReport, console: Any = None) -> None:
    """Print the report as readable tables (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    r = report
    console.print(f"[bold]Churn-risk evaluation[/bold] - {r.source} (replay mode {r.mode})")
    what = "no purchase" if r.label == "purchase" else "no activity"
    who = f"active in the {r.active_days} d before" if r.active_days > 0 else "everyone seen before"
    console.print(
        f"cut-off {r.cutoff}, churn = {what} in the {r.horizon_days} d after it, population = "
        f"{who}: {r.n_customers} customers, {r.n_churners} churned "
        f"(base rate {_pct(r.base_rate)})"
    )
    m = r.model
    if m:
        v = m.get("validation") or {}
        learnt = "prior weights (not enough outcomes)"
        if m.get("learned"):
            learnt = (
                "the prior's weights, recalibrated (they predicted the outcomes better)"
                if v.get("selected") == "prior"
                else "learned weights"
            )
        console.print(
            f"streaming model at the cut-off: {m.get('version')}, P({what} in "
            f"{m.get('horizon_days')} d), {learnt}; {v.get('labels', 0)} outcomes learnt, "
            f"progressive AUC {v.get('auc', '-')} / Brier {v.get('brier', '-')} on the last "
            f"{v.get('window', 0)}; {r.publications} models published"
        )
    table = Table(title="Ranking at the cut-off (top decile = the customers a team would call)")
    for col in ("population", "score", "ROC AUC", "precision@top 10%", "lift", "Brier"):
        table.add_column(col, justify="right" if col not in ("population", "score") else "left")

    def row(population: str, name: str, ranking: Ranking) -> None:
        table.add_row(
            population,
            name,
            f"{ranking.auc:.3f}",
            _pct(ranking.precision_at_decile),
            f"{ranking.lift:.2f}x",
            "-" if ranking.brier is None else f"{ranking.brier:.3f}",
        )

    everyone = f"all (n={r.n_customers}, {_pct(r.base_rate)} churn)"
    if r.active_days > 0:
        everyone = f"active in {r.active_days} d (n={r.n_customers}, {_pct(r.base_rate)} churn)"
    row(everyone, STREAMING, r.score)
    for name, ranking in (r.comparisons or {RECENCY: r.baseline}).items():
        row("", name, ranking)
    if r.recent_score is not None and r.recent_baseline is not None:
        recent = f"active in last 14 d (n={r.recent_n_customers}, {_pct(r.recent_base_rate)} churn)"
        row(recent, STREAMING, r.recent_score)
        if r.recent_hand_set is not None:
            row("", HAND_SET, r.recent_hand_set)
        row("", RECENCY, r.recent_baseline)
    console.print(table)
    if not r.levels:
        console.print(
            "churn-risk levels: not computed (--no-levels: silent customers were evaluated only "
            "on their snapshot and outcome days; the scores above are unchanged)"
        )
        _render_footer(r, console)
        return
    lead = Table(title="churn-risk `high` events")
    lead.add_column("measure")
    lead.add_column("value", justify="right")
    lead.add_row("churners flagged high", f"{r.churners_flagged} of {r.n_churners}")
    lead.add_row(
        "lead time: high event - last activity (p25 / median / p75)",
        f"{_days(r.lead_days_p25)} / {_days(r.lead_days_median)} / {_days(r.lead_days_p75)}",
    )
    lead.add_row(
        "flagged within 14 d of going silent",
        f"{_pct(r.flagged_within_14d)} of {r.flagged_within_14d_of}",
    )
    lead.add_row(
        "flagged within 30 d of going silent",
        f"{_pct(r.flagged_within_30d)} of {r.flagged_within_30d_of}",
    )
    lead.add_row(
        f"false alarms: non-churners sent to high in the {r.false_alarm_window_days} d "
        "before the cut-off",
        f"{r.false_alarms} of {r.n_non_churners} ({_pct(r.false_alarm_rate)})",
    )
    lead.add_row("non-churners at high at the cut-off", str(r.high_at_cutoff_non_churners))
    lead.add_row(
        f"alarm precision: churners among those sent to high in the {r.false_alarm_window_days} d "
        "before the cut-off",
        _pct(r.alarm_precision),
    )
    lead.add_row(
        "churn-risk events (low / medium / high)",
        f"{r.churn_events} ({r.churn_events_by_level.get('low', 0)} / "
        f"{r.churn_events_by_level.get('medium', 0)} / {r.churn_events_by_level.get('high', 0)})",
    )
    console.print(lead)
    if r.level_tradeoffs:
        trade = Table(title="the same scorings at other thresholds (exits 0.1 below the entries)")
        for col in ("levels", "flagged", "lead p25 / median / p75", "within 14 / 30 d",
                    "false alarms", "alarm precision"):  # fmt: skip
            trade.add_column(col, justify="left" if col == "levels" else "right")
        for name, f in r.level_tradeoffs.items():
            trade.add_row(
                name,
                f"{f.churners_flagged} of {r.n_churners}",
                f"{_days(f.lead_days_p25)} / {_days(f.lead_days_median)} / "
                f"{_days(f.lead_days_p75)}",
                f"{_pct(f.flagged_within_14d)} / {_pct(f.flagged_within_30d)}",
                f"{f.false_alarms} ({_pct(f.false_alarm_rate)})",
                _pct(f.alarm_precision),
            )
        console.print(trade)
    _render_footer(r, console)


def _render_footer(r: EvaluationReport, console: Any) -> None:
    rejected = f", rejected {r.n_rejected}" if r.n_rejected else ""
    console.print(
        f"{r.n_events} events replayed, {r.n_scored} scorings{rejected}; {r.runtime_seconds:.1f} s"
    )
    for note in r.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
