"""Everything one worker shares between its agents, timers and views."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from models.churn_model import ChurnModel
from models.clustering import SegmentAssigner
from models.profile_policy import AttributePolicy
from streams.clock import StreamClock
from streams.metrics import Metrics
from streams.processing import CustomerProcessor
from streams.settings import Settings

__all__ = ["Runtime"]

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Shared, in-memory worker state. Nothing here is the source of truth:
    customer state lives in the tables; models and clocks on their topics."""

    settings: Settings
    metrics: Metrics
    processor: CustomerProcessor
    worker_id: str
    clock: StreamClock = field(default_factory=StreamClock)
    assigner: SegmentAssigner | None = None
    model_message: dict[str, Any] | None = None
    # The churn model published by the churn learner (None: the prior), passed
    # to the processor as ``churn_params``; and the message it came in.
    churn_params: ChurnModel | None = None
    churn_message: dict[str, Any] | None = None
    training_buffer: list[dict[str, Any]] = field(default_factory=list)
    partition_clock: dict[int, int] = field(default_factory=dict)
    partition_stats: dict[int, dict[str, Any]] = field(default_factory=dict)
    remote_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    broadcast_caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = field(default_factory=time.time)
    # Which profile attributes are kept (allow-list and limits).
    profile_policy: AttributePolicy = field(default_factory=AttributePolicy)
    # Secret salt of learner keys (streams.learner_salt); set before any event is handled.
    learner_salt: bytes | None = None

    def observe_partition_clock(self, partition: int, ts_ms: int) -> None:
        """Track the largest event time per input partition (and overall)."""
        self.clock.observe(ts_ms)
        if ts_ms > self.partition_clock.get(partition, 0):
            self.partition_clock[partition] = ts_ms

    def salt(self) -> bytes:
        """The learner-key salt; an error before it is loaded (never an unsalted key)."""
        if self.learner_salt is None:
            raise RuntimeError("the learner salt is not loaded yet")
        return self.learner_salt

    def reviewed_through(self, partition: int) -> int:
        """Last day the sweep brought every customer of ``partition`` up to.

        Kept in the partition's stream-clock record, so a worker that takes
        the partition over (or restarts) does not evaluate those days again.
        """
        day = self.partition_stats.get(partition, {}).get("reviewed_through")
        if day is None:
            day = self.remote_stats.get(f"p{partition}", {}).get("reviewed_through", -1)
        return int(day)

    def assigner_signature(self) -> str | None:
        """Signature (cluster ids) of the model in use, ``None`` before the first."""
        if self.assigner is None:
            return None
        from streams.processing import assigner_signature

        return assigner_signature(self.assigner)

    def install_model(self, message: dict[str, Any]) -> None:
        """Adopt a model snapshot published on the segment-models topic."""
        if message.get("kind") == "churn":
            self.install_churn_model(message)
            return
        self.model_message = message
        snapshot = message.get("snapshot")
        if snapshot and snapshot.get("centroids"):
            self.assigner = SegmentAssigner.from_snapshot(snapshot)
            self.metrics.model_refreshed(
                int(snapshot.get("version", 0)),
                len(snapshot["centroids"]),
                snapshot.get("published_s"),
            )

    def install_churn_model(self, message: dict[str, Any]) -> None:
        """Adopt a churn model published by the churn learner (plain JSON, no code).

        A model for another horizon, label or offset than this worker tracks (the
        settings changed) is not used: workers keep the prior until the
        learner publishes one for the new question.
        """
        try:
            model = ChurnModel.from_dict(message["model"], scorer=self.processor.scorer)
        except (KeyError, TypeError, ValueError):
            log.exception("ignoring an unreadable churn model")
            return
        self.churn_message = message
        tracking = self.processor.tracking
        if model.question != tracking.question:
            log.warning(
                "ignoring a churn model of another question (H, label, offset = %s)",
                model.question,
            )
            return
        self.churn_params = model
        self.metrics.churn_model_installed(model.revision, model.learned, model.validation)
