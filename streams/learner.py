"""The single learner that owns the cluster model.

Workers send batches of feature vectors to the one-partition
``segment-training`` topic; whichever worker owns that partition runs this
learner and publishes versioned snapshots to the compacted ``segment-models``
topic. A learner that moves to another worker resumes from the last snapshot,
which carries the learner's full state. (The churn model has a learner of its
own, :mod:`streams.churn_learner`, published under its own key.)
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any

from models.clustering import SegmentLearner
from streams.runtime import Runtime

__all__ = ["LearnerHost"]

log = logging.getLogger(__name__)


@dataclass
class LearnerHost:
    """Owns a :class:`SegmentLearner`."""

    rt: Runtime
    publish_every: int = 2000
    seed: int = 42
    learner: SegmentLearner | None = None
    pending: int = 0

    def ensure_learner(self) -> SegmentLearner:
        """Restore the learner from the latest snapshot, or start a fresh one."""
        if self.learner is None:
            message = self.rt.model_message or {}
            self.learner = self._restore(message) or SegmentLearner(
                warmup=self.rt.settings.cluster_warmup, seed=self.seed
            )
        return self.learner

    def _restore(self, message: dict[str, Any]) -> SegmentLearner | None:
        """The published learner state; else a learner resumed from the snapshot alone."""
        if message.get("state"):
            try:
                learner = SegmentLearner.from_bytes(base64.b64decode(message["state"]))
                log.info("learner restored from model version %s", learner.version)
                return learner
            except Exception:
                # An incompatible state (another release) must not stop the worker.
                log.exception("cannot restore the learner state; resuming from the snapshot")
        if message.get("snapshot"):
            try:
                return SegmentLearner.from_snapshot(
                    message["snapshot"], warmup=self.rt.settings.cluster_warmup, seed=self.seed
                )
            except Exception:
                log.exception("cannot resume from the snapshot; starting a fresh learner")
        return None

    def learn(self, items: list[dict[str, Any]], learning: bool = True) -> int:
        """Learn from one batch sent by a worker; return how many samples erasures removed.

        With ``learning=False`` (a frozen model) only the erasures are applied:
        privacy requests are honoured whatever the model's state. An erasure
        removes the customer's cluster sample (their row of the BTYD summary
        goes at the next sweep of their partition, see docs/churn.md).
        """
        learner = self.ensure_learner()
        forgotten = 0
        for item in items:
            if "erase" in item:
                forgotten += learner.forget(item["erase"])
                continue
            if not learning:
                continue
            if "x" not in item:
                continue  # not a cluster sample (a churn outcome)
            learner.learn_one(item["x"], key=item.get("k"))
            self.pending += 1
        return forgotten

    def should_publish(self) -> bool:
        return self.pending >= self.publish_every

    def snapshot_message(self) -> dict[str, Any]:
        """The message published on ``segment-models``: snapshot plus full state."""
        learner = self.ensure_learner()
        snapshot = learner.snapshot()
        snapshot["published_s"] = time.time()
        self.pending = 0
        return {
            "snapshot": snapshot,
            "state": base64.b64encode(learner.to_bytes()).decode(),
        }
