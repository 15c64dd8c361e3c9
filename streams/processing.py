"""What happens to one customer when an event (or a timer) arrives.

This module holds no Kafka code: it takes the customer's stored state, the
validated event and the stream clock, and returns the new state plus the
output events to send. The Faust agents in :mod:`streams.agents` do the I/O.

The whole customer lives in one JSON-serialisable dict, written to the table
once per accepted event, so features, dedup memory, segments, churn level and
the output sequence number always agree, also after a crash::

    {"f": <models.features state>, "dedup": <models.dedup state>,
     "seg": {segment_type: {"current", "since_ms", "label"}},
     "churn": {"level", "score", "since_ms", "reasons", "review_ms"},
     "seq": int, "train_day": int, "browse_day": int, "off": {topic: [partition, offset]},
     "eval_day": int, "t": int}

``eval_day`` is the last day the customer was brought up to, and ``t`` their
own clock: the time of their latest event, or of the latest evaluation that
changed a segment or churn level.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from models import dedup, features
from models.churn import ChurnScorer, churn_level
from models.clustering import SegmentAssigner, cluster_vector
from models.eventtime import MS_PER_DAY, day_of, format_ts
from models.kpis import KpiTracker
from models.rules import RuleEngine

__all__ = [
    "CustomerProcessor",
    "Result",
    "assigner_signature",
    "learner_key",
    "output_event_id",
    "training_sample",
]

BEHAVIOUR_TOPICS = frozenset({"purchases", "browsing", "support", "feedback"})
FEATURE_TOPICS = BEHAVIOUR_TOPICS | {"profiles"}
FLAP_WINDOW_MS = 7 * MS_PER_DAY


def output_event_id(*parts: object) -> str:
    """Deterministic id of an output event: the same trigger gives the same id.

    Examples
    --------
    >>> a = output_event_id("c1", "e1", "lifecycle", "new")
    >>> a == output_event_id("c1", "e1", "lifecycle", "new")
    True
    >>> a == output_event_id("c1", "e2", "lifecycle", "new")
    False
    >>> len(output_event_id("c1"))
    32
    """
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass
class Result:
    """Outcome of handling one event or timer for one customer."""

    status: str  # new | duplicate | late | opted_out | unchanged
    state: dict[str, Any] | None
    segment_changes: list[dict[str, Any]] = field(default_factory=list)
    churn_events: list[dict[str, Any]] = field(default_factory=list)
    training_vector: dict[str, float] | None = None
    btyd: list[float] | None = None  # (frequency, recency, T, monetary_value) for the fits
    flaps: list[str] = field(default_factory=list)  # segment types that flapped
    write: bool = False  # whether the state must be written back

    def merge(self, later: Result) -> None:
        """Append the outputs of a later evaluation of the same customer."""
        self.segment_changes.extend(later.segment_changes)
        self.churn_events.extend(later.churn_events)
        self.flaps.extend(later.flaps)

    def merge_changes(self, timer: Result, at_ms: int) -> None:
        """Merge a timer evaluation at ``at_ms`` that changed something, and move
        the customer's clock (``state["t"]``) to it; one that changed nothing
        leaves both as they were."""
        if timer.segment_changes or timer.churn_events:
            assert self.state is not None
            self.state["t"] = max(self.state.get("t", 0), at_ms)
            self.merge(timer)


@dataclass
class CustomerProcessor:
    """Per-customer logic: dedup, features, rule segments, clusters, churn.

    Parameters
    ----------
    rules
        The rule engine (lifecycle, value, nps and user-defined segments).
    scorer
        The churn scorer.
    dedup_window_ms
        How far back repeated event ids are recognised (per customer and topic).
    tracker
        Keeps the customer's KPI contribution and experiment outcomes
        (``state["kc"]``, ``state["xo"]``; :mod:`models.kpis`).
    """

    rules: RuleEngine
    scorer: ChurnScorer
    dedup_window_ms: int = 7 * MS_PER_DAY
    rules_version: str = "rules-1"
    tracker: KpiTracker | None = None

    # -- events -----------------------------------------------------------
    def handle(
        self,
        customer_id: str,
        state: dict[str, Any] | None,
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
            state = new_customer_state()
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
        features.apply_event(state["f"], topic, event)
        if self.tracker is not None:
            self.tracker.applied(state, topic, event)
        clock_ms = max(state.get("t", 0), event["ts"])
        state["t"] = clock_ms
        if not self.can_skip_evaluation(state, topic, today):
            state["eval_day"] = day_of(clock_ms)
            if topic == "browsing":
                state["browse_day"] = today
            result.merge(
                self.evaluate(
                    customer_id, state, clock_ms, assigner, event["event_id"], churn_params
                )
            )
        result.status = "new"
        result.write = True
        if topic in BEHAVIOUR_TOPICS and state.get("train_day") != today:
            # One training sample per customer and event day keeps the learner's
            # input balanced between heavy and light customers.
            state["train_day"] = today
            feats = result_features(state, clock_ms)
            result.training_vector = cluster_vector(feats)
            if feats.get("T") is not None:
                # (monetary_value: the learner's Gamma-Gamma fit of the spend per purchase)
                result.btyd = [
                    feats["frequency"],
                    feats["recency"],
                    feats["T"],
                    feats["monetary_value"],
                ]
        return result

    def catch_up(
        self,
        customer_id: str,
        state: dict[str, Any],
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
        """
        result = Result("unchanged", state)
        if "eval_day" not in state or state.get("opted_out"):
            return result
        first = max(state["eval_day"], reviewed_through) + 1
        for day in range(first, until_day + 1):
            step = self.evaluate(
                customer_id, state, day * MS_PER_DAY, assigner, f"clock:{day}", churn_params
            )
            result.merge_changes(step, day * MS_PER_DAY)
        if first <= until_day:
            state["eval_day"] = until_day
        return result

    @staticmethod
    def can_skip_evaluation(state: dict[str, Any], topic: str, day: int) -> bool:
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
        state: dict[str, Any],
        day: int,
        assigner: SegmentAssigner | None,
        churn_params: Any = None,
        reviewed_through: int = -1,
    ) -> Result:
        """Bring a customer without new events up to the start of ``day`` (the sweep).

        Every day since their last evaluation is evaluated in turn
        (:meth:`catch_up`). A customer whose clusters changed (a new model) and
        who had nothing to catch up is placed again at their own latest time.
        """
        if state.get("opted_out"):
            return Result("opted_out", state)
        result = self.catch_up(customer_id, state, day, assigner, churn_params, reviewed_through)
        if assigner is not None and state.get("model") != assigner_signature(assigner):
            when = max(state.get("t", 0), day * MS_PER_DAY)
            step = self.evaluate(customer_id, state, when, assigner, f"clock:{day}", churn_params)
            result.merge_changes(step, when)
        # Written back only when something changed; an unchanged customer is
        # evaluated again (with the same outcome) only if the sweep's progress
        # is lost.
        result.write = bool(result.segment_changes or result.churn_events)
        result.status = "changed" if result.write else "unchanged"
        return result

    def due_for_review(
        self, state: dict[str, Any], day: int, model_version: str | None = None
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
        self, customer_id: str, state: dict[str, Any], ts_ms: int, trigger: str
    ) -> Result:
        """Segment changes to ``None`` for every segment: the customer opted out."""
        result = Result("opted_out", state)
        for seg_type, entry in sorted(state["seg"].items()):
            if entry["current"] is None:
                continue
            result.segment_changes.append(
                self._segment_change(
                    customer_id,
                    state,
                    trigger,
                    ts_ms,
                    seg_type,
                    entry["current"],
                    None,
                    "Opted out of profiling",
                    ["customer opted out of profiling"],
                    self.rules_version,
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
        state: dict[str, Any],
        clock_ms: int,
        assigner: SegmentAssigner | None,
        trigger: str,
        churn_params: Any = None,
    ) -> Result:
        """Assign segments and churn level at ``clock_ms``; emit what changed."""
        feats = result_features(state, clock_ms)
        result = Result("new", state)
        segments = state["seg"]
        previous = {
            k: {"current": v["current"], "since_ms": v["since_ms"]} for k, v in segments.items()
        }
        assignments = self.rules.assign(feats, previous, clock_ms)
        for seg_type, assignment in assignments.items():
            old = segments.get(seg_type, {}).get("current")
            if assignment.current == old:
                continue
            self._record(result, segments, seg_type, assignment.current, assignment.label, clock_ms)
            result.segment_changes.append(
                self._segment_change(
                    customer_id,
                    state,
                    trigger,
                    clock_ms,
                    seg_type,
                    old,
                    assignment.current,
                    assignment.label,
                    list(assignment.reasons),
                    self.rules_version,
                )
            )
        if assigner is not None:
            state["model"] = assigner_signature(assigner)
        if assigner is not None and feats.get("browsing_events", 0) + feats.get("orders", 0) > 0:
            old = segments.get("cluster", {}).get("current")
            cluster_id, _margin, reasons = assigner.assign(cluster_vector(feats), old)
            if cluster_id is not None and cluster_id != old:
                label = assigner.label(cluster_id)
                self._record(result, segments, "cluster", cluster_id, label, clock_ms)
                result.segment_changes.append(
                    self._segment_change(
                        customer_id,
                        state,
                        trigger,
                        clock_ms,
                        "cluster",
                        old,
                        cluster_id,
                        label,
                        reasons,
                        assigner.model_version,
                    )
                )
        churn_event = self._churn(customer_id, state, feats, clock_ms, trigger, churn_params)
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
        if (
            old is not None
            and old.get("previous") == current
            and clock_ms - old["since_ms"] < FLAP_WINDOW_MS
        ):
            # Back where the customer was less than a week ago: a flap.
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
        state: dict[str, Any],
        trigger: str,
        clock_ms: int,
        segment_type: str,
        previous: str | None,
        current: str | None,
        label: str,
        reasons: list[str],
        model_version: str,
    ) -> dict[str, Any]:
        state["seq"] = state.get("seq", 0) + 1
        return {
            "event_id": output_event_id(customer_id, trigger, segment_type, current),
            "customer_id": customer_id,
            "seq": state["seq"],
            "ts": format_ts(clock_ms),
            "segment_type": segment_type,
            "previous": previous,
            "current": current,
            "label": label,
            "reasons": reasons,
            "model_version": model_version,
            "experiments": [],  # filled by the tracker when entering an experiment's segment
        }

    def _churn(
        self,
        customer_id: str,
        state: dict[str, Any],
        feats: dict[str, Any],
        clock_ms: int,
        trigger: str,
        churn_params: Any,
    ) -> dict[str, Any] | None:
        churn = state.setdefault("churn", {})
        scored = self.scorer.score(feats, churn_params)
        previous_level = churn.get("level")
        level = churn_level(scored.score, previous_level)
        churn["score"] = scored.score
        churn["reasons"] = list(scored.reasons)
        if level == previous_level:
            return None
        churn["level"] = level
        churn["since_ms"] = clock_ms
        return {
            "event_id": output_event_id(customer_id, trigger, "churn", level),
            "customer_id": customer_id,
            "ts": format_ts(clock_ms),
            "score": scored.score,
            "level": level,
            "previous_level": previous_level,
            "reasons": list(scored.reasons),
            "model_version": self.scorer.model_version(churn_params),
            "experiments": [],
        }

    # -- reading ------------------------------------------------------------
    def view(
        self, customer_id: str, state: dict[str, Any], clock_ms: int, churn_params: Any = None
    ) -> dict[str, Any]:
        """The ``GET /customers/{id}`` document, as of ``clock_ms``.

        Features and the churn score are computed at the moment of reading, with
        the same fitted ``churn_params`` the levels are decided with; the churn
        level is the one last emitted (it moves with hysteresis).
        """
        churn = dict(state.get("churn", {}))
        feats = result_features(state, clock_ms)
        if churn.get("level") is not None:
            scored = self.scorer.score(feats, churn_params)
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
    :mod:`streams.learner_salt`): whoever reads ``segment-training`` or
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
    """The learner's sample of one customer: vector, BG/NBD triple, salted key."""
    return {"k": learner_key(customer_id, salt), "x": result.training_vector, "btyd": result.btyd}


def assigner_signature(assigner: SegmentAssigner) -> str:
    """The cluster ids of a model: a customer is re-placed when they change.

    Refreshed centroids with the same ids move customers only on their next
    event or the daily pass; new, split or merged clusters re-place everyone.
    """
    return ",".join(sorted(assigner.ids))


def new_customer_state() -> dict[str, Any]:
    """An empty customer: no features, no segments, nothing remembered."""
    return {"f": features.new_state(), "dedup": dedup.new_dedup(), "seg": {}, "churn": {}, "seq": 0}


def result_features(state: dict[str, Any], clock_ms: int) -> dict[str, Any]:
    """Features of ``state`` read at ``clock_ms``."""
    return features.read_features(state["f"], clock_ms)
