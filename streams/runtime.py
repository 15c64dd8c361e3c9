"""Everything one worker shares between its agents, timers and views."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from models.btyd import BGNBDParams
from models.clustering import SegmentAssigner
from models.eventtime import day_of
from models.experiments import Experiment
from models.gamma_gamma import GammaGammaParams
from models.kpis import KpiBook
from models.profile_policy import AttributePolicy
from streams.clock import StreamClock
from streams.metrics import Metrics
from streams.processing import CustomerProcessor
from streams.settings import Settings

__all__ = ["Runtime"]


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
    churn_params: BGNBDParams | None = None
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
    # Experiments of the segments YAML, and the KPI sums of the owned partitions.
    experiments: tuple[Experiment, ...] = ()
    kpis: KpiBook = field(init=False)

    def __post_init__(self) -> None:
        self.kpis = KpiBook(today=lambda: day_of(self.clock.now_ms))

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
        self.model_message = message
        snapshot = message.get("snapshot")
        if snapshot and snapshot.get("centroids"):
            self.assigner = SegmentAssigner.from_snapshot(snapshot)
            self.metrics.model_refreshed(
                int(snapshot.get("version", 0)),
                len(snapshot["centroids"]),
                snapshot.get("published_s"),
            )
        if message.get("churn_params"):
            self.churn_params = BGNBDParams.from_dict(message["churn_params"])
        tracker = self.processor.tracker
        if tracker is not None:  # the CLV's models (models.clv)
            if isinstance(self.churn_params, BGNBDParams):
                tracker.purchases = self.churn_params
            if message.get("spend_params"):
                tracker.spend = GammaGammaParams.from_dict(message["spend_params"])
