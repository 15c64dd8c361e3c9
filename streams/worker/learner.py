"""The single learner that owns the cluster model.

Workers send batches of feature vectors to the one-partition
``segment-training`` topic, each with how far in stream time every input
partition it owns is complete (``through``); whichever worker owns that
partition runs this learner, closes each period of stream time once every
partition has passed it (the slowest partition's time is the watermark), and
publishes the model that changed to the compacted ``segment-models`` topic. A
learner that moves to another worker resumes from the last snapshot, which
carries the learner's full state in a data-only format
(:mod:`models.learner_state`): a record that is not one is refused and
counted, never executed. (The churn model has a
learner of its own, :mod:`streams.worker.churn_learner`, published under its own key.)
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from models.clustering import LearnerStateError, SegmentLearner
from streams.worker.runtime import Runtime

__all__ = ["LearnerHost"]

log = logging.getLogger(__name__)

# The first clusters are formed two weeks of stream time after the first sample:
# vectors read 30/90-day windows, and on a few days of history the choice of k
# is made on half-empty ones (measured: k = 7 on day 1 of five personas, then
# splits and merges for five weeks; docs/quality.md).
WARMUP_DAYS = 14


@dataclass
class LearnerHost:
    """Owns a :class:`SegmentLearner`."""

    rt: Runtime
    seed: int = 42
    learner: SegmentLearner | None = None
    pending: int = 0
    # input partition -> stream time (ms) through which its samples have all come
    through: dict[int, int] = field(default_factory=dict)
    published_version: int | None = None  # model version of the last published snapshot
    published_as_of: int | None = None  # its as_of (ms): the day it was published as of

    def ensure_learner(self) -> SegmentLearner:
        """Restore the learner from the latest snapshot, or start a fresh one."""
        if self.learner is None:
            message = self.rt.model_message or {}
            self.learner = self._restore(message) or SegmentLearner(**self.learner_params())
            self.learner.set_k_bounds(*self._k_bounds())
            self.published_version = self.learner.version if message.get("snapshot") else None
            snapshot = message.get("snapshot") or {}
            as_of = snapshot.get("as_of_ms") if isinstance(snapshot, dict) else None
            self.published_as_of = as_of if isinstance(as_of, int) else None
        return self.learner

    def _k_bounds(self) -> tuple[int, int]:
        clusters = self.rt.processor.rules.config.clusters
        return clusters.k_min, clusters.k_max

    def learner_params(self) -> dict[str, Any]:
        """The :class:`SegmentLearner` arguments the settings and the segments YAML give."""
        k_min, k_max = self._k_bounds()
        warmup = max(self.rt.settings.cluster_warmup, 5 * k_max)
        return {
            "k_min": k_min,
            "k_max": k_max,
            "warmup": warmup,
            "warmup_days": WARMUP_DAYS,
            "seed": self.seed,
        }

    def _restore(self, message: dict[str, Any]) -> SegmentLearner | None:
        """The published learner state; else a learner resumed from the snapshot alone.

        The state is data only and validated (``SegmentLearner.from_bytes``):
        anything else, a pickle included, is refused, counted and never run.
        """
        if message.get("state"):
            try:
                state = message["state"]
                if not isinstance(state, str):
                    raise LearnerStateError("the learner state must be a base64 string")
                learner = SegmentLearner.from_bytes(base64.b64decode(state, validate=True))
                log.info("learner restored from model version %s", learner.version)
                return learner
            except (LearnerStateError, ValueError) as exc:
                # Another release's state, or a forged record: never stop the worker.
                self.rt.metrics.model_record_rejected("state")
                log.warning(
                    "refused the published learner state (%s); resuming from the snapshot", exc
                )
        if message.get("snapshot"):
            try:
                return SegmentLearner.from_snapshot(message["snapshot"], **self.learner_params())
            except Exception:
                log.exception("cannot resume from the snapshot; starting a fresh learner")
        return None

    def learn(
        self,
        items: list[dict[str, Any]],
        learning: bool = True,
        through: dict[str, int] | None = None,
    ) -> int:
        """Learn from one batch sent by a worker; return how many samples erasures removed.

        ``through`` maps the sender's input partitions to the stream time (ms)
        up to which all their samples are in this batch or earlier ones. With
        ``learning=False`` (a frozen model) only the erasures are applied:
        privacy requests are honoured whatever the model's state.
        An erasure removes the customer's cluster sample (their row of the
        BTYD summary goes at the next sweep of their partition, docs/churn.md).
        """
        learner = self.ensure_learner()
        forgotten = 0
        late_before = learner.late_samples
        for item in items:
            if "erase" in item:
                forgotten += learner.forget(item["erase"])
                continue
            if not learning:
                continue
            if "x" not in item:
                continue  # not a cluster sample (a churn outcome)
            learner.learn_one(item["x"], key=item.get("k"), t=item.get("t"))
            self.pending += 1
        late = learner.late_samples - late_before
        if late:
            self.rt.metrics.cluster_samples_arrived_late(late)
            log.info(
                "%d cluster sample(s) arrived after their day had closed (the last %.1f h "
                "behind the model's day): the live model timeline may differ from a replay's",
                late,
                learner.latest_lateness_ms / 3_600_000,
            )
        for partition, ms in (through or {}).items():
            p = int(partition)
            self.through[p] = max(self.through.get(p, int(ms)), int(ms))
        return forgotten

    def watermark(self) -> int | None:
        """Stream time through which every input partition's samples are in (the
        slowest partition's), or None until each partition has reported."""
        partitions = range(self.rt.settings.partitions)
        if any(p not in self.through for p in partitions):
            return None
        return min(self.through[p] for p in partitions)

    def advance(self) -> bool:
        """Close the periods of stream time every partition has passed; True if the
        model changed (publish it)."""
        mark = self.watermark()
        return mark is not None and self.ensure_learner().advance(mark)

    def moved_on(self) -> bool:
        """Whether the learner has closed a later day than the last snapshot says
        (warming up, or without a change): published anyway, so workers that keep
        pace with the model's day (streams.worker.model_pace) go on."""
        learner = self.ensure_learner()
        closed = learner.closed_through
        return closed is not None and (
            self.published_as_of is None or closed > self.published_as_of
        )

    def should_publish(self) -> bool:
        """Whether the model changed since the last snapshot message."""
        return self.ensure_learner().changed

    def snapshot_message(self) -> dict[str, Any]:
        """The message published on ``segment-models``: snapshot plus full state."""
        learner = self.ensure_learner()
        snapshot = learner.snapshot()
        snapshot["published_s"] = time.time()
        self.pending = 0
        self.published_version = learner.version
        self.published_as_of = learner.closed_through
        return {
            "snapshot": snapshot,
            "state": base64.b64encode(learner.to_bytes()).decode(),
        }
