"""Everything one worker shares between its agents, timers and views."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from models.change_rate import add_changes, change_rate, prune
from models.churn_model import ChurnModel
from models.clock import StreamClock
from models.clustering import SegmentAssigner, SnapshotError
from models.eventtime import day_of, parse_ts
from models.experiments import Experiment
from models.gamma_gamma import GammaGammaParams
from models.kpis import KpiBook
from models.processing import CustomerProcessor, assigner_signature
from models.profile_policy import AttributePolicy
from streams.settings import Settings
from streams.worker.due_index import DueIndex
from streams.worker.metrics import Metrics
from streams.worker.model_pace import ModelPace
from streams.worker.wakeup import Wakeups

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
    # partition -> the clock this worker last had acknowledged on the stream-clock topic
    clock_published: dict[int, int] = field(default_factory=dict)
    partition_stats: dict[int, dict[str, Any]] = field(default_factory=dict)
    remote_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    # partition -> {stream day: cluster changes} (models.change_rate)
    cluster_changes: dict[int, dict[str, int]] = field(default_factory=dict)
    broadcast_caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = field(default_factory=time.time)
    # Which profile attributes are kept (allow-list and limits).
    profile_policy: AttributePolicy = field(default_factory=AttributePolicy)
    # Secret salt of learner keys (streams.worker.learner_salt); set before any event is handled.
    learner_salt: bytes | None = None
    _reported_bad_model: bool = False
    # Experiments of the segments YAML, and the KPI sums of the owned partitions.
    experiments: tuple[Experiment, ...] = ()
    kpis: KpiBook = field(init=False)
    # How far past the cluster model's as_of events may be handled (streams.worker.model_pace).
    model_pace: ModelPace = field(init=False)
    # The loops of the per-stream-day chain, woken by the step before them (streams.worker.wakeup).
    wakeups: Wakeups = field(default_factory=Wakeups)
    # The daily pass's due day per customer (streams.worker.due_index).
    due_index: DueIndex = field(init=False)

    def __post_init__(self) -> None:
        self.kpis = KpiBook(today=lambda: day_of(self.clock.now_ms))
        # (a frozen model does not move: nothing to keep pace with)
        lead_days = self.settings.cluster_model_lead_days if self.settings.learning else 0.0
        self.model_pace = ModelPace(lead_ms=round(lead_days * 86_400_000))
        self.due_index = DueIndex(
            enabled=self.settings.sweep_due_index,
            capacity=self.settings.sweep_due_index_max_customers,
        )

    def observe_partition_clock(self, partition: int, ts_ms: int) -> None:
        """Track the largest event time per input partition (and overall)."""
        self.clock.observe(ts_ms)
        if self.model_pace.as_of_ms is None:
            self.model_pace.started(ts_ms, time.monotonic())
        if ts_ms > self.partition_clock.get(partition, 0):
            self.partition_clock[partition] = ts_ms

    def partition_record(self, partition: int) -> dict[str, Any]:
        """The partition's record on the stream-clock topic: its clock, the
        statistics of its last pass and its KPI sums.

        The clock never goes below what was published for the partition before:
        a worker that restarts or takes the partition over has seen none of its
        events yet, and the topic is compacted (only the newest record stays).
        """
        key = f"p{partition}"
        clock_ms = max(self.partition_clock.get(partition, 0), self.clock.remote_ms.get(key, 0))
        message: dict[str, Any] = {"clock_ms": clock_ms, **self.partition_stats.get(partition, {})}
        # Until derived here, the KPI sums its previous owner published stand.
        kpis = self.kpis.record(partition) or self.remote_stats.get(key, {}).get("kpis")
        if kpis is not None:
            message["kpis"] = kpis
        return message

    def pacing(self) -> bool:
        """Whether events now wait for the cluster model (``streams.worker.model_pace``):
        then every link of the per-stream-day chain is worth waking at once."""
        return self.model_pace.limit(time.monotonic()) != math.inf

    def clocks_to_publish(self) -> list[int]:
        """Partitions whose clock moved past what the stream-clock topic holds."""
        published = self.clock_published
        heard = self.clock.remote_ms
        return [
            partition
            for partition, clock_ms in self.partition_clock.items()
            if clock_ms > max(published.get(partition, 0), heard.get(f"p{partition}", 0))
        ]

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

    def count_cluster_changes(self, partition: int, changes: list[dict[str, Any]]) -> None:
        """Count the moves between clusters among ``changes`` (first entries and
        exits excluded) on the partition, by day of stream time."""
        for change in changes:
            if (
                change["segment_type"] != "cluster"
                or change["previous"] is None
                or change["current"] is None
                or "model_change" in change
            ):
                continue
            counts = self.cluster_changes.get(partition)
            if counts is None:  # taken over: go on from what the last owner published
                published = self.remote_stats.get(f"p{partition}", {}).get("cluster_changes")
                counts = dict(published) if isinstance(published, dict) else {}
                self.cluster_changes[partition] = counts
            add_changes(counts, day_of(parse_ts(change["ts"])))

    def cluster_change_stats(self, partition: int, today: int) -> dict[str, int]:
        """The partition's change counts of the last 30 days, kept for its statistics."""
        counts = self.cluster_changes.get(partition)
        if counts is None:
            published = self.remote_stats.get(f"p{partition}", {}).get("cluster_changes")
            counts = dict(published) if isinstance(published, dict) else {}
        counts = prune(counts, today)
        self.cluster_changes[partition] = counts
        return counts

    def cluster_change_rate(self, today: int) -> float:
        """Cluster changes per customer over the last 30 days, over every partition."""
        stats = dict(self.remote_stats)
        stats.update({f"p{p}": s for p, s in self.partition_stats.items()})
        counts = [s.get("cluster_changes") or {} for s in stats.values()]
        customers = sum(int(s.get("customers") or 0) for s in stats.values())
        return change_rate(counts, customers, today)

    def assigner_signature(self) -> str | None:
        """Signature (cluster ids) of the model in use, ``None`` before the first."""
        if self.assigner is None:
            return None
        return assigner_signature(self.assigner)

    def install_model(self, message: Any) -> bool:
        """Adopt a model published on the segment-models topic; False if it was refused.

        A malformed record (not an object, a snapshot the assigner cannot use,
        an unreadable churn model) is skipped whole: the previous model stays
        in use, the record is counted (``segmenter_model_records_rejected_total``)
        and the first one is logged. Nothing here raises.
        """
        if isinstance(message, dict) and message.get("kind") == "churn":
            return self.install_churn_model(message)
        try:
            if not isinstance(message, dict):
                raise SnapshotError("the record must be a JSON object")
            snapshot = message.get("snapshot")
            assigner = None
            if snapshot and snapshot.get("centroids"):
                assigner = SegmentAssigner.from_snapshot(snapshot)
        except Exception as exc:
            self.reject_model_record("snapshot", exc)
            return False
        self.model_message = message
        as_of_ms = (snapshot or {}).get("as_of_ms")
        if isinstance(as_of_ms, int) and not isinstance(as_of_ms, bool):
            # (warming up too: the learner publishes every day it closes)
            before = self.model_pace.as_of_ms
            self.model_pace.heard(as_of_ms, time.monotonic())
            if self.model_pace.as_of_ms != before:
                self.wakeups.release.set()  # the held events of the next day may go
        if assigner is not None:
            if self.assigner_signature() != assigner_signature(assigner):
                self.due_index.clear()  # everyone meets the new clusters at the next pass
            self.assigner = assigner
            published = (snapshot or {}).get("published_s")
            as_of = (snapshot or {}).get("as_of_ms")
            self.metrics.model_refreshed(
                assigner.version,
                len(assigner.ids),
                float(published) if isinstance(published, int | float) else None,
                as_of if isinstance(as_of, int) and not isinstance(as_of, bool) else None,
            )
        return True

    def reject_model_record(self, reason: str, error: object) -> None:
        """Count a refused segment-models record; log the first one of this worker."""
        self.metrics.model_record_rejected(reason)
        if not self._reported_bad_model:
            self._reported_bad_model = True
            log.warning(
                "skipped a %s record of segment-models (%s): the previous model stays in "
                "use; further ones are only counted (segmenter_model_records_rejected_total)",
                reason,
                error,
            )

    def install_churn_model(self, message: dict[str, Any]) -> bool:
        """Adopt a churn model published by the churn learner (plain JSON, no code);
        False if it was refused.

        A model for another horizon, label or offset than this worker tracks (the
        settings changed) is not used: workers keep the prior until the
        learner publishes one for the new question.
        """
        try:
            model = ChurnModel.from_dict(message["model"], scorer=self.processor.scorer)
            spend = message.get("spend")  # Gamma-Gamma, for the CLV (models.clv)
            spend_params = None if spend is None else GammaGammaParams.from_dict(spend)
        except Exception as exc:
            self.reject_model_record("churn", exc)
            return False
        self.churn_message = message
        self.due_index.clear()  # new scores, snapshots and CLV: every due day may move
        tracker = self.processor.tracker
        if tracker is not None:  # the CLV's models, whatever question the churn score answers
            tracker.set_models(model.btyd, spend_params)
        tracking = self.processor.tracking
        if model.question != tracking.question:
            log.warning(
                "ignoring a churn model of another question (H, label, offset = %s)",
                model.question,
            )
            return True
        self.churn_params = model
        self.metrics.churn_model_installed(model.revision, model.learned, model.validation)
        return True
