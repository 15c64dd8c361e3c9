"""What happens to one customer when an event (or a timer) arrives.

This module holds no Kafka code: it takes the customer's stored state, the
validated event and the stream clock, and returns the new state plus the
output events to send. The Faust agents in :mod:`streams.agents` do the I/O.

The whole customer lives in one JSON-serialisable dict, written to the table
once per accepted event, so features, dedup memory, segments, churn level and
the output sequence number always agree, also after a crash. Its layout, key
by key, is :class:`models.customer.CustomerState` (the one description of it);
this module writes most of its keys, and creates it with
:func:`models.customer.new_state`.

Output ids (:func:`change_event_id`) say what a change *is*, never what
triggered it: the customer, the profile (``born``: the time of the event that
created this record, so a customer who comes back after an erasure or an
opt-out gets new ids), the segment type, the change's ordinal within that type
(``n``; ``churn.seq`` for churn levels), and the previous and current segment.
Everything in it is read from the state the change is decided on, so the same
change reached again after a crash — through another event, a day's catch-up
or the sweep — carries the same id, and two changes never share one. Ordinals
count per type, so a change of another type that comes out differently after a
restart (a newer cluster model) cannot renumber it. ``seq`` numbers every
change of the customer, in order; it is in the output, the ordinals are not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from models import dedup, features
from models.churn import DEFAULT_THRESHOLDS, ChurnScorer, LevelThresholds, churn_level
from models.churn_model import FEATURES, ChurnModel
from models.churn_outcomes import ChurnTracking
from models.clustering import SegmentAssigner, cluster_vector
from models.customer import CustomerState, new_state
from models.eventtime import MS_PER_DAY, day_of, format_ts
from models.kpis import KpiTracker
from models.rules import RuleEngine, is_flap
from models.topics import BEHAVIOUR_TOPICS

__all__ = [
    "CustomerProcessor",
    "Result",
    "assigner_signature",
    "btyd_row",
    "change_event_id",
    "churn_training_items",
    "has_behaviour",
    "learner_key",
    "output_event_id",
    "spend_row",
    "training_sample",
    "training_samples",
]

# Segment types whose "no segment" means "not assessed yet" (no activity, no
# cluster model yet): leaving it is the customer's first assignment. For nps
# and user-defined rules, "no segment" is an assessment of its own ("no NPS
# answer", "no case matched"), and entering a segment from it later is news.
UNASSESSED_WHEN_NONE = frozenset({"lifecycle", "value", "cluster"})
# A customer without new behaviour sends the learner a fresh sample this often
# (their dormancy grows, their 30/90-day windows empty): the model learns the
# customer base as the daily sweep assigns it, not as it was at each last event.
REFRESH_SAMPLE_MS = 7 * MS_PER_DAY
# Catch-ups this long or longer jump from due day to due day (measured in
# tests/models/test_due.py: a due day costs about one evaluation).
JUMP_MIN_DAYS = 4


def output_event_id(*parts: object) -> str:
    """A 32-hex-digit hash of ``parts``: equal parts, equal id.

    Examples
    --------
    >>> a = output_event_id("c1", "lifecycle", 1, None, "new")
    >>> a == output_event_id("c1", "lifecycle", 1, None, "new")
    True
    >>> a == output_event_id("c1", "lifecycle", 2, None, "new")
    False
    >>> len(output_event_id("c1"))
    32
    """
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def change_event_id(
    topic: str,
    customer_id: str,
    born: int | None,
    kind: str,
    ordinal: int,
    previous: str | None,
    current: str | None,
) -> str:
    """The ``event_id`` of a change: what it is, not what triggered it.

    ``kind`` is the segment type (or ``"churn"``), ``ordinal`` the change's
    number within that kind for this customer (1 for the first), ``born`` the
    event time that started the customer's profile (see the module docstring).

    Examples
    --------
    >>> first = change_event_id("segment-changes", "c1", 0, "cluster", 1, None, "c2")
    >>> first == change_event_id("segment-changes", "c1", 0, "cluster", 1, None, "c2")
    True
    >>> # the same move again later is another change, and so is another profile
    >>> first == change_event_id("segment-changes", "c1", 0, "cluster", 3, None, "c2")
    False
    >>> first == change_event_id("segment-changes", "c1", 86400000, "cluster", 1, None, "c2")
    False
    """
    return output_event_id("v2", topic, customer_id, born, kind, ordinal, previous, current)


@dataclass
class Result:
    """Outcome of handling one event or timer for one customer."""

    status: str  # new | duplicate | late | opted_out | unchanged
    state: CustomerState | None
    segment_changes: list[dict[str, Any]] = field(default_factory=list)
    churn_events: list[dict[str, Any]] = field(default_factory=list)
    training_vector: dict[str, float] | None = None
    training_ms: int | None = None  # the time training_vector describes
    # (time, vector) refreshes of a customer without new behaviour (catch-up days)
    refresh: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    flaps: list[str] = field(default_factory=list)  # segment types that flapped
    write: bool = False  # whether the state must be written back
    # Matured churn outcomes for the learner: [vector, churned, snapshot day].
    churn_labels: list[list[Any]] = field(default_factory=list)
    tracked: bool = False  # a churn snapshot was taken or released: write the state
    # (clock, features view) an evaluation read: reused for a sample at that clock
    read: tuple[int, dict[str, Any]] | None = field(default=None, repr=False)

    def merge(self, later: Result) -> None:
        """Append the outputs of a later evaluation of the same customer."""
        self.segment_changes.extend(later.segment_changes)
        self.churn_events.extend(later.churn_events)
        self.flaps.extend(later.flaps)
        self.churn_labels.extend(later.churn_labels)
        self.tracked = self.tracked or later.tracked

    def merge_changes(self, timer: Result, at_ms: int) -> None:
        """Merge a timer evaluation at ``at_ms`` that changed something, and move
        the customer's clock (``state["t"]``) to it; one that changed nothing
        leaves both as they were. Churn snapshots and outcomes are always kept
        (they do not move the customer's clock)."""
        self.churn_labels.extend(timer.churn_labels)
        self.tracked = self.tracked or timer.tracked
        if timer.segment_changes or timer.churn_events:
            assert self.state is not None
            self.state["t"] = max(self.state.get("t", 0), at_ms)
            self.segment_changes.extend(timer.segment_changes)
            self.churn_events.extend(timer.churn_events)
            self.flaps.extend(timer.flaps)


@dataclass
class CustomerProcessor:
    """Per-customer logic: dedup, features, rule segments, clusters, churn.

    Parameters
    ----------
    rules
        The rule engine (lifecycle, value, nps and user-defined segments).
    scorer
        The behavioural churn factors (inside every churn model).
    dedup_window_ms
        How far back repeated event ids are recognised (per customer and topic).
    tracker
        Keeps the customer's KPI contribution and experiment outcomes
        (``state["kc"]``, ``state["xo"]``; :mod:`models.kpis`).
    tracking
        Churn outcome tracking: horizon H, what counts as activity, offset,
        snapshot cadence (:mod:`models.churn_outcomes`).
    thresholds
        Enter/exit scores of the churn levels (``SEGMENTER_CHURN_*_THRESHOLD``).
    jump_min_days
        A catch-up of at least this many days evaluates only the days something
        can change (:mod:`models.due`) instead of every day: same outputs and
        state, O(changes) instead of O(days) for a restart, a backlog or a
        customer back after a long silence.

    The churn model is passed per call as ``churn_params`` (the latest
    :class:`models.churn_model.ChurnModel` published by the learner); ``None``
    scores with the prior (today's hand-set weights, the default BTYD fit).
    """

    rules: RuleEngine
    scorer: ChurnScorer
    dedup_window_ms: int = 7 * MS_PER_DAY
    rules_version: str = "rules-1"
    tracker: KpiTracker | None = None
    tracking: ChurnTracking = field(default_factory=ChurnTracking)
    thresholds: LevelThresholds = DEFAULT_THRESHOLDS
    jump_min_days: int = JUMP_MIN_DAYS
    _prior: ChurnModel | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # (here, not as the field's default: mypyc's dataclasses leave those unset)
        self._prior = None

    def churn_model(self, churn_params: Any = None) -> ChurnModel:
        """The model to score with: the published one, else the prior."""
        if isinstance(churn_params, ChurnModel):
            return churn_params
        if self._prior is None:
            self._prior = ChurnModel(
                scorer=self.scorer,
                horizon_days=self.tracking.horizon_days,
                label=self.tracking.label,
                offset_days=self.tracking.offset_days,
            )
        return self._prior

    def observe_outcome(self, state: CustomerState, topic: str, ts_ms: int) -> None:
        """An accepted event: it may be the outcome pending churn snapshots wait for."""
        churn = state.get("churn")
        if churn:
            self.tracking.observe(churn, topic, ts_ms)

    # -- events -----------------------------------------------------------
    def handle(
        self,
        customer_id: str,
        state: CustomerState | None,
        topic: str,
        event: dict[str, Any],
        assigner: SegmentAssigner | None,
        churn_params: Any = None,
        reviewed_through: int = -1,
    ) -> Result:
        """Apply one validated event (``ts`` in epoch ms) of ``topic``.

        The customer is evaluated in their own event time: first at the start
        of every day since their last evaluation up to the event's day (what
        the daily sweep would have done, had it run before the event), then at
        the event's ``ts`` (or at their last evaluation time, for an event older
        than that). So the outcome depends on the customer's events alone, not
        on how far other customers' events have moved the stream clock.
        ``reviewed_through`` is the last day the sweep has evaluated every
        customer of the partition at (those days are not evaluated again).
        """
        if state is None:
            state = new_state(born=event["ts"])
        elif state.get("opted_out"):
            return Result("opted_out", state)
        verdict = dedup.check(
            state["dedup"], topic, event["event_id"], event["ts"], window_ms=self.dedup_window_ms
        )
        if verdict != "new":
            # A duplicate changes nothing; a late event's id was not remembered.
            return Result(verdict, state)
        today = day_of(event["ts"])
        result = self.catch_up(customer_id, state, today, assigner, churn_params, reviewed_through)
        self.observe_outcome(state, topic, event["ts"])
        features.apply_event(state["f"], topic, event)
        if self.tracker is not None:
            self.tracker.applied(state, topic, event)
        clock_ms = max(state.get("t", 0), event["ts"])
        state["t"] = clock_ms
        if not self.can_skip_evaluation(state, topic, today):
            state["eval_day"] = day_of(clock_ms)
            if topic == "browsing":
                state["browse_day"] = today
            cause = f"event:{event['event_id']}"
            evaluated = self.evaluate(customer_id, state, clock_ms, assigner, churn_params, cause)
            result.merge(evaluated)
            result.read = evaluated.read
        result.status = "new"
        result.write = True
        if topic in BEHAVIOUR_TOPICS and state.get("train_day") != today:
            # One training sample per customer and event day keeps the learner's
            # input balanced between heavy and light customers.
            state["train_day"] = today
            state["train_ms"] = clock_ms
            feats = features_at(result, state, clock_ms)
            result.training_vector = cluster_vector(feats)
            result.training_ms = clock_ms
        return result

    def catch_up(
        self,
        customer_id: str,
        state: CustomerState,
        until_day: int,
        assigner: SegmentAssigner | None,
        churn_params: Any = None,
        reviewed_through: int = -1,
    ) -> Result:
        """Evaluate the customer at the start of each day after their last evaluation.

        Days up to ``until_day``, skipping those up to ``reviewed_through``
        (already evaluated by the sweep). A customer never evaluated has
        nothing to catch up. Evaluating a day again that changed nothing
        changes nothing, so the caller may drop the state of a catch-up without
        outputs and repeat it later.

        A customer who has not met the current cluster model's clusters (new,
        split or merged ones) meets them first, at their own time
        (``state["t"]``): whether the sweep or their next event gets there
        first, and whether or not a crash lost the first attempt, they are
        placed at the same moment, with the same features, so the placement is
        the same change.
        """
        result = Result("unchanged", state)
        if "eval_day" not in state or state.get("opted_out"):
            return result
        if assigner is not None and state.get("model") != assigner_signature(assigner):
            when = state.get("t", 0)
            result.merge_changes(
                self.evaluate(
                    customer_id,
                    state,
                    when,
                    assigner,
                    churn_params,
                    f"model:{assigner.model_version}",
                ),
                when,
            )
        first = max(state["eval_day"], reviewed_through) + 1
        if until_day - first + 1 >= self.jump_min_days:
            self._jump_to_due_days(
                customer_id, state, first, until_day, assigner, churn_params, result
            )
        else:
            for day in range(first, until_day + 1):
                self._day_start(customer_id, state, day, assigner, churn_params, result)
        if first <= until_day:
            state["eval_day"] = until_day
        return result

    def _day_start(
        self,
        customer_id: str,
        state: CustomerState,
        day: int,
        assigner: SegmentAssigner | None,
        churn_params: Any,
        result: Result,
    ) -> Result:
        """Evaluate the customer at the start of ``day``, into ``result``; the step."""
        cause = f"day:{format_ts(day * MS_PER_DAY)[:10]}"
        step = self.evaluate(
            customer_id, state, day * MS_PER_DAY, assigner, churn_params, cause, day_start=True
        )
        result.merge_changes(step, day * MS_PER_DAY)
        self._refresh_sample(state, day * MS_PER_DAY, result, step)
        return step

    def _jump_to_due_days(
        self,
        customer_id: str,
        state: CustomerState,
        first: int,
        until_day: int,
        assigner: SegmentAssigner | None,
        churn_params: Any,
        result: Result,
    ) -> None:
        """The days ``first``..``until_day`` as :meth:`catch_up` evaluates them one by
        one, evaluating only the days something can change (:mod:`models.due`) and
        the last one: the same outputs, ids and final state, in O(changes).

        A due day costs about one evaluation to compute, so short gaps (the
        daily sweep's one day) are evaluated day by day (``jump_min_days``).
        """
        from models.due import plan  # (models.due reads this module's processor)

        state["eval_day"] = first - 1  # the days before are evaluated already
        last = None  # the previous plan, while it may be reused
        while True:
            last = plan(self, customer_id, state, assigner, churn_params, reuse=last)
            if last.day is None or last.day > until_day:
                break
            kpis = state.get("kc")
            step = self._day_start(customer_id, state, last.day, assigner, churn_params, result)
            state["eval_day"] = last.day
            if step.segment_changes or step.churn_events or state.get("kc") is not kpis:
                last = None  # only snapshots and refresh samples leave the plan valid
        if state["eval_day"] < until_day:
            # (nothing moves; evaluated as the daily loop's last day, for its caches)
            self._day_start(customer_id, state, until_day, assigner, churn_params, result)

    @staticmethod
    def _refresh_sample(
        state: CustomerState, at_ms: int, result: Result, evaluated: Result | None = None
    ) -> None:
        """A fresh learner sample at ``at_ms`` if the customer's last one is a week old."""
        last = state.get("train_ms")
        if last is None:
            if state.get("train_day") is None:
                return  # never had behaviour: nothing to learn from
            last = state["train_day"] * MS_PER_DAY
        if at_ms - last >= REFRESH_SAMPLE_MS:
            state["train_ms"] = at_ms
            feats = features_at(evaluated, state, at_ms)
            result.refresh.append((at_ms, cluster_vector(feats)))

    def refresh(self, state: CustomerState, day: int) -> Result:
        """The learner's refresh sample at the start of ``day``, without an evaluation:
        what the evaluation of a day on which nothing else can change adds
        (:func:`models.due.plan` with ``refresh=False`` says which days those are).
        ``write`` when a sample was taken."""
        result = Result("unchanged", state)
        self._refresh_sample(state, day * MS_PER_DAY, result)
        result.write = bool(result.refresh)
        result.status = "changed" if result.write else "unchanged"
        return result

    @staticmethod
    def can_skip_evaluation(state: CustomerState, topic: str, day: int) -> bool:
        """Whether a browsing event may skip re-evaluating segments and churn.

        Browsing is most of the traffic and rarely moves a segment: after the
        first browsing event of a day has been evaluated, later ones that day
        only update features, unless the customer is at medium or high churn
        risk (where renewed activity should lower the level at once). Every
        other topic is always evaluated, and the sweep re-evaluates everyone
        once per day of stream time.
        """
        return (
            topic == "browsing"
            and state.get("browse_day") == day  # not just any evaluation today
            and state.get("churn", {}).get("level") in (None, "low")
        )

    def review(
        self,
        customer_id: str,
        state: CustomerState,
        day: int,
        assigner: SegmentAssigner | None,
        churn_params: Any = None,
        reviewed_through: int = -1,
    ) -> Result:
        """Bring a customer without new events up to the start of ``day`` (the sweep).

        Every day since their last evaluation is evaluated in turn, after the
        customer has met a new model's clusters (:meth:`catch_up`).
        """
        if state.get("opted_out"):
            return Result("opted_out", state)
        result = self.catch_up(customer_id, state, day, assigner, churn_params, reviewed_through)
        # Written back only when something changed; an unchanged customer is
        # evaluated again (with the same outcome) only if the sweep's progress
        # is lost. A churn snapshot taken or released, and a learner refresh
        # sample, are changes too.
        result.write = bool(
            result.segment_changes or result.churn_events or result.tracked or result.refresh
        )
        result.status = "changed" if result.write else "unchanged"
        return result

    def due_for_review(
        self, state: CustomerState, day: int, model_version: str | None = None
    ) -> bool:
        """Whether the sweep has anything to do for this customer at the start of ``day``.

        A customer not evaluated yet on ``day`` is brought up to it, so
        lifecycle, value and churn move on without waiting for the customer's
        next event; so is a customer not yet placed by the current cluster
        model. (Day granularity is the resolution of every duration feature,
        so a finer timer could not change an answer.)
        """
        if state.get("opted_out"):
            return False
        if model_version is not None and state.get("model") != model_version:
            return True  # new or changed clusters: place the customer among them
        return bool(state.get("eval_day", day) < day)

    def leave_all_segments(
        self, customer_id: str, state: CustomerState, ts_ms: int, request_id: str
    ) -> Result:
        """Segment changes to ``None`` for every segment: the customer opted out
        (``request_id``: the privacy request's ``event_id``)."""
        result = Result("opted_out", state)
        for seg_type, entry in sorted(state["seg"].items()):
            if entry["current"] is None:
                continue
            result.segment_changes.append(
                self._segment_change(
                    customer_id,
                    state,
                    ts_ms,
                    seg_type,
                    entry["current"],
                    None,
                    "Opted out of profiling",
                    ["customer opted out of profiling"],
                    self.rules_version,
                    f"opt_out:{request_id}",
                    initial=False,
                )
            )
        return result

    @staticmethod
    def format_ts(ts_ms: int) -> str:
        """RFC 3339 form of ``ts_ms`` used in every output event."""
        return format_ts(ts_ms)

    # -- evaluation ---------------------------------------------------------
    def evaluate(
        self,
        customer_id: str,
        state: CustomerState,
        clock_ms: int,
        assigner: SegmentAssigner | None,
        churn_params: Any,
        cause: str,
        day_start: bool = False,
    ) -> Result:
        """Assign segments and churn level at ``clock_ms``; emit what changed.

        ``cause`` names the evaluation in the outputs (``event:<event_id>``,
        ``day:<date>``, ``model:<version>``); it is not part of their ids.

        A change from no segment is ``initial`` (a first assignment, not a
        move) when it is part of the customer's first assessment (nothing was
        assigned before this evaluation), or when "no segment" meant "not
        assessed yet" (:data:`UNASSESSED_WHEN_NONE`: the first lifecycle stage
        once there is activity, the first cluster once there is a model).
        Entering an nps or user-defined segment later, e.g. a first NPS answer
        weeks after the first purchase, is not initial.

        ``day_start``: the evaluation at 00:00 of a day, before its events,
        where churn snapshots are taken and matured outcomes released.
        """
        feats = result_features(state, clock_ms)
        result = Result("new", state, read=(clock_ms, feats))
        segments = state["seg"]
        first_assessment = not segments
        previous = {
            k: {"current": v["current"], "since_ms": v["since_ms"]} for k, v in segments.items()
        }
        # Only the changed types: their words are built, the others' are not.
        for assignment in self.rules.changes(feats, previous, clock_ms):
            seg_type = assignment.segment_type
            old = segments.get(seg_type, {}).get("current")
            self._record(result, segments, seg_type, assignment.current, assignment.label, clock_ms)
            result.segment_changes.append(
                self._segment_change(
                    customer_id,
                    state,
                    clock_ms,
                    seg_type,
                    old,
                    assignment.current,
                    assignment.label,
                    list(assignment.reasons),
                    self.rules_version,
                    cause,
                    initial=old is None and (first_assessment or seg_type in UNASSESSED_WHEN_NONE),
                )
            )
        if assigner is not None:
            state["model"] = assigner_signature(assigner)
        # Every customer with behaviour (what the learner learns from) is placed; a
        # profile alone is not.
        if assigner is not None and has_behaviour(feats):
            old = segments.get("cluster", {}).get("current")
            vector = cluster_vector(feats)
            cluster_id, _margin, _ = assigner.assign(vector, old, explain=False)
            if cluster_id is not None and cluster_id != old:
                reasons = assigner.assign(vector, old)[2]  # words only for a move
                label = assigner.label(cluster_id)
                self._record(result, segments, "cluster", cluster_id, label, clock_ms)
                result.segment_changes.append(
                    self._segment_change(
                        customer_id,
                        state,
                        clock_ms,
                        "cluster",
                        old,
                        cluster_id,
                        label,
                        reasons,
                        assigner.model_version,
                        cause,
                        initial=old is None,
                    )
                )
        churn_event = self.churn_step(
            customer_id, state, feats, clock_ms, churn_params, cause, day_start, result
        )
        if churn_event is not None:
            result.churn_events.append(churn_event)
        if self.tracker is not None:
            self.tracker.evaluated(
                customer_id, state, feats, clock_ms, result.segment_changes, result.churn_events
            )
        return result

    @staticmethod
    def _record(
        result: Result,
        segments: dict[str, Any],
        seg_type: str,
        current: str | None,
        label: str,
        clock_ms: int,
    ) -> None:
        old = segments.get(seg_type)
        if is_flap(old, current, clock_ms):
            # Back where the customer was less than a week ago.
            result.flaps.append(seg_type)
        segments[seg_type] = {
            "current": current,
            "previous": old["current"] if old else None,
            "since_ms": clock_ms,
            "label": label,
        }

    def _segment_change(
        self,
        customer_id: str,
        state: CustomerState,
        clock_ms: int,
        segment_type: str,
        previous: str | None,
        current: str | None,
        label: str,
        reasons: list[str],
        model_version: str,
        cause: str,
        *,
        initial: bool,
    ) -> dict[str, Any]:
        state["seq"] = state.get("seq", 0) + 1
        ordinals = state.setdefault("n", {})
        ordinals[segment_type] = ordinals.get(segment_type, 0) + 1
        return {
            "event_id": change_event_id(
                "segment-changes",
                customer_id,
                state.get("born"),
                segment_type,
                ordinals[segment_type],
                previous,
                current,
            ),
            "customer_id": customer_id,
            "seq": state["seq"],
            "ts": format_ts(clock_ms),
            "segment_type": segment_type,
            "previous": previous,
            "current": current,
            "initial": initial,
            "label": label,
            "reasons": reasons,
            "model_version": model_version,
            "cause": cause,
            "experiments": [],  # filled by the tracker when entering an experiment's segment
        }

    def churn_step(
        self,
        customer_id: str,
        state: CustomerState,
        feats: dict[str, Any],
        clock_ms: int,
        churn_params: Any,
        cause: str,
        day_start: bool = False,
        result: Result | None = None,
    ) -> dict[str, Any] | None:
        """Score churn, track outcomes, apply hysteresis; the churn-risk event if the level moved.

        At a day start, matured snapshots are released into ``result.churn_labels``
        and a snapshot of today's feature vector may be taken.
        """
        churn = state.setdefault("churn", {})
        model = self.churn_model(churn_params)
        scored = model.score(feats, explain=False)
        big_t = feats.get("T")
        if big_t is not None:
            hi = state["f"].get("hi") or clock_ms
            today = max(clock_ms, hi) // MS_PER_DAY
            churn["b"] = [feats["frequency"], feats["recency"], today - big_t]
        if day_start:
            vector = [scored.values[name] for name in FEATURES]
            released, changed = self.tracking.start_of_day(
                churn, customer_id, clock_ms // MS_PER_DAY, vector
            )
            if result is not None:
                result.churn_labels.extend(released)
                result.tracked = result.tracked or changed
        previous_level = churn.get("level")
        level = churn_level(scored.score, previous_level, self.thresholds)
        churn["score"] = scored.score
        if level == previous_level:
            return None
        reasons = model.score(feats).reasons  # words only when they are sent
        churn["reasons"] = list(reasons)  # why the customer is at this level
        churn["level"] = level
        churn["since_ms"] = clock_ms
        churn["seq"] = churn.get("seq", 0) + 1
        return {
            "event_id": change_event_id(
                "churn-risk",
                customer_id,
                state.get("born"),
                "churn",
                churn["seq"],
                previous_level,
                level,
            ),
            "customer_id": customer_id,
            "seq": churn["seq"],
            "ts": format_ts(clock_ms),
            "score": scored.score,
            "level": level,
            "previous_level": previous_level,
            "initial": previous_level is None,
            "reasons": list(reasons),
            "model_version": model.version_label,
            "cause": cause,
            "experiments": [],
        }

    # -- reading ------------------------------------------------------------
    def view(
        self, customer_id: str, state: CustomerState, clock_ms: int, churn_params: Any = None
    ) -> dict[str, Any]:
        """The ``GET /customers/{id}`` document, as of ``clock_ms``.

        Features and the churn score are computed at the moment of reading, with
        the same fitted ``churn_params`` the levels are decided with; the churn
        level is the one last emitted (it moves with hysteresis).
        """
        churn = dict(state.get("churn", {}))
        feats = result_features(state, clock_ms)
        if churn.get("level") is not None:
            scored = self.churn_model(churn_params).score(feats)
            churn["score"], churn["reasons"] = scored.score, list(scored.reasons)
        return {
            "customer_id": customer_id,
            "features": feats,
            "segments": {k: v["current"] for k, v in state["seg"].items()},
            "segment_labels": {k: v.get("label") for k, v in state["seg"].items()},
            "churn_risk": {
                "score": churn.get("score"),
                "level": churn.get("level"),
                "reasons": churn.get("reasons", []),
            },
            "stream_clock": format_ts(clock_ms),
        }


def learner_key(customer_id: str, salt: bytes) -> str:
    """The id-free key under which the learner holds a customer's sample.

    A keyed hash (BLAKE2b with the secret ``salt``, see
    :mod:`streams.worker.learner_salt`): whoever reads ``segment-training`` or
    ``segment-models`` without the salt cannot tell whose sample a key is, not
    even by hashing a list of known customer ids. Every worker has the same
    salt, so an erasure handled by any of them finds the sample.

    >>> key = learner_key("c1", b"salt")
    >>> len(key), key == learner_key("c1", b"salt"), key == learner_key("c1", b"other")
    (16, True, False)
    """
    if not salt:
        raise ValueError("learner keys need the secret salt")
    return hashlib.blake2b(customer_id.encode(), key=salt, digest_size=8).hexdigest()


def training_sample(customer_id: str, result: Result, salt: bytes) -> dict[str, Any]:
    """The learner's sample of one customer: vector, its time and salted key."""
    return {
        "k": learner_key(customer_id, salt),
        "x": result.training_vector,
        "t": result.training_ms,
    }


def training_samples(customer_id: str, result: Result, salt: bytes) -> list[dict[str, Any]]:
    """Every learner sample of a result: catch-up refreshes, then the event's own."""
    key = learner_key(customer_id, salt)
    samples = [{"k": key, "x": vector, "t": at_ms} for at_ms, vector in result.refresh]
    if result.training_vector is not None:
        samples.append(training_sample(customer_id, result, salt))
    return samples


def btyd_row(state: CustomerState) -> list[int] | None:
    """The customer's ``[frequency, recency, first purchase day]`` (``None``: never bought).

    Kept up to date by every churn evaluation; what a sweep adds to the
    partition's :class:`models.btyd_summary.BTYDSummary`.
    """
    row = (state.get("churn") or {}).get("b")
    return None if row is None else [int(v) for v in row]


def spend_row(state: CustomerState) -> tuple[int, float] | None:
    """The repeat customer's ``(frequency, monetary_value)`` (``None``: no repeat purchase).

    What a sweep adds to the partition's :class:`models.spend_summary.SpendSummary`
    (the Gamma-Gamma fit of the CLV): the frequency of :func:`btyd_row`, the
    repeat purchase days' total over it.
    """
    row = (state.get("churn") or {}).get("b")
    if row is None or row[0] <= 0:
        return None
    return int(row[0]), features.repeat_revenue(state["f"]) / row[0]


def churn_training_items(result: Result) -> list[dict[str, Any]]:
    """Matured churn outcomes for the learner: ``{"churn": [vector, churned, day]}``.

    No customer id or key: an outcome is an anonymous example.
    """
    return [{"churn": label} for label in result.churn_labels]


def assigner_signature(assigner: SegmentAssigner) -> str:
    """The cluster ids of a model: a customer is re-placed when they change.

    Refreshed centroids with the same ids move customers only on their next
    event or the daily pass; new, split or merged clusters re-place everyone.
    """
    return ",".join(sorted(assigner.ids))


_BEHAVIOUR_COUNTS = (
    "orders",
    "browsing_events",
    "tickets",
    "nps_count",
    "csat_count",
    "review_count",
)


def has_behaviour(feats: dict[str, Any]) -> bool:
    """Whether a customer did anything but send a profile (buy, browse, ask, rate).

    >>> has_behaviour({"orders": 0, "tickets": 1}), has_behaviour({"orders": 0})
    (True, False)
    """
    return any(feats.get(name) for name in _BEHAVIOUR_COUNTS)


def result_features(state: CustomerState, clock_ms: int) -> dict[str, Any]:
    """Features of ``state`` read at ``clock_ms``."""
    return features.read_features(state["f"], clock_ms)


def features_at(evaluated: Result | None, state: CustomerState, clock_ms: int) -> dict[str, Any]:
    """Features of ``state`` at ``clock_ms``: those ``evaluated`` read if it read at that
    clock (an evaluation changes segments and churn, never the features), else read now."""
    if evaluated is not None and evaluated.read is not None and evaluated.read[0] == clock_ms:
        return evaluated.read[1]
    return result_features(state, clock_ms)
