"""Prometheus metrics of the Segmenter worker.

Every metric lives on a :class:`~prometheus_client.CollectorRegistry` handed to
:class:`Metrics` (one registry per Faust app), never on prometheus-client's
global default registry: tests build many apps in one process and each must
start from zero.

Conventions (see ``docs/operations.md`` for the meaning of every metric):

* every family name starts with ``segmenter_``; counters end in ``_total``,
  durations are in seconds (``_seconds``), instants are Unix timestamps in
  seconds (``_timestamp_seconds``);
* label values come from small, bounded sets (topic names, rejection reasons,
  segment types and ids, churn levels). A customer id is never a label;
* ``topic`` labels carry the *logical* topic name (``purchases``, not
  ``<prefix>purchases``), so dashboards do not depend on ``SEGMENTER_TOPIC_PREFIX``.

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> m = Metrics(registry)
>>> m.consumed("purchases")
>>> m.rejected("purchases", "invalid_json")
>>> m.sample("segmenter_events_consumed_total", topic="purchases")
1.0
>>> m.sample("segmenter_events_rejected_total", topic="purchases", reason="invalid_json")
1.0
>>> b"segmenter_worker_ready 0.0" in render(registry)
True
"""

from __future__ import annotations

import functools
import math
import sys
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from models.profile_policy import REJECT_REASONS as ATTRIBUTE_REJECT_REASONS
from models.topics import INPUT_TOPICS, OUTPUT_TOPICS
from schemas import REASONS as VALIDATION_REASONS
from streams.worker.repartition import REASONS as REPARTITION_REASONS

__all__ = [
    "CHURN_LEVELS",
    "CONTENT_TYPE",
    "EMIT_LATENCY_BUCKETS",
    "INPUT_TOPICS",
    "LATENCY_OUTPUTS",
    "METRIC_NAMES",
    "MODEL_REJECT_REASONS",
    "OUTPUT_TOPICS",
    "PRIVACY_ACTIONS",
    "PROCESSING_BUCKETS",
    "REJECT_REASONS",
    "REPARTITION_REASONS",
    "SEGMENT_TYPES",
    "TABLES",
    "Metrics",
    "content_type",
    "exported_names",
    "exposition",
    "observe_many",
    "render",
]

# Input and output topics (logical names) come from the published schemas;
# their series are created at start-up with 0.
#: Values of the ``output`` label of the event-to-emit latency histogram.
LATENCY_OUTPUTS: tuple[str, ...] = ("segment_changes", "churn_risk")
#: Why an event was rejected. All but ``erased`` and ``opted_out`` go to dead
#: letters; those two are dropped on purpose (keeping them would keep personal
#: data). Any other code is counted as ``other``.
REJECT_REASONS: frozenset[str] = VALIDATION_REASONS | {
    "late",
    "processing_error",
    "key_mismatch",
    "erased",
    "opted_out",
    "other",
}
#: Built-in segment types; user-defined rule names are added when first seen.
SEGMENT_TYPES: tuple[str, ...] = ("cluster", "lifecycle", "value", "nps")
#: Churn-risk levels.
CHURN_LEVELS: tuple[str, ...] = ("low", "medium", "high")
#: Actions of the ``privacy`` topic.
PRIVACY_ACTIONS: tuple[str, ...] = ("opt_out", "opt_in", "erase")
#: Faust tables whose key counts are exported.
TABLES: tuple[str, ...] = ("customers",)
#: Why a ``segment-models`` record was refused.
MODEL_REJECT_REASONS: tuple[str, ...] = ("unreadable", "snapshot", "state", "churn")

#: Event-to-emit latency buckets: 1 ms … 60 s.
EMIT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: Per-event processing time buckets: 10 µs … 1 s.
PROCESSING_BUCKETS: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)

# (measure, index in models.kpis.SEG_FIELDS / XP_FIELDS) of the KPI gauges
_KPI_COUNTS = (
    ("members", 0),
    ("active_30d", 1),
    ("viewed_30d", 2),
    ("converted_30d", 3),
    ("churn_high", 4),
    ("nps_promoters", 5),
    ("nps_passives", 6),
    ("nps_detractors", 7),
    ("with_clv", 10),
)
_EXPERIMENT_COUNTS = (
    ("exposed", 0),
    ("completed", 1),
    ("active", 2),
    ("purchased", 3),
    ("churn_high", 6),
)

#: Content type of :func:`render` (the Prometheus text exposition format).
CONTENT_TYPE: str = CONTENT_TYPE_LATEST

_OTHER_REASON = "other"


class Metrics:
    """All metrics of one worker, registered on ``registry``.

    Parameters
    ----------
    registry:
        The app's own registry. Never the global default one.
    input_topics, output_topics, segment_types:
        Label values whose series are created up front (at 0), so that
        ``rate()`` and dashboards see them before the first event.
    process_metrics:
        Also register the standard ``process_*``, ``python_info`` and
        ``python_gc_*`` collectors on ``registry``.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> m = Metrics(CollectorRegistry())
    >>> m.processed("browsing"); m.processed("browsing")
    >>> m.sample("segmenter_events_processed_total", topic="browsing")
    2.0
    >>> m.set_segment_sizes("lifecycle", {"active": 10, "lapsed": 3})
    >>> m.sample("segmenter_segment_size", segment_type="lifecycle", segment="active")
    10.0
    >>> m.set_segment_sizes("lifecycle", {"active": 12})  # "lapsed" is gone
    >>> m.sample("segmenter_segment_size", segment_type="lifecycle", segment="lapsed") is None
    True
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        input_topics: Iterable[str] = INPUT_TOPICS,
        output_topics: Iterable[str] = OUTPUT_TOPICS,
        segment_types: Iterable[str] = SEGMENT_TYPES,
        process_metrics: bool = True,
    ) -> None:
        # No `<name>_created` series: they double the scrape for a timestamp
        # Prometheus does not use (a process-wide switch of prometheus-client,
        # thrown where a worker builds its metrics).
        disable_created_metrics()
        self.registry = registry
        r = registry

        # -- input side ---------------------------------------------------
        self.events_consumed = Counter(
            "segmenter_events_consumed_total",
            "Messages read from an input topic (before validation).",
            ["topic"],
            registry=r,
        )
        self.events_processed = Counter(
            "segmenter_events_processed_total",
            "Events validated and applied to customer state.",
            ["topic"],
            registry=r,
        )
        self.events_rejected = Counter(
            "segmenter_events_rejected_total",
            "Events rejected (dead-lettered, or dropped for privacy), by reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.events_duplicate = Counter(
            "segmenter_events_duplicate_total",
            "Events skipped because their event_id was already processed.",
            ["topic"],
            registry=r,
        )
        self.events_repartitioned = Counter(
            "segmenter_events_repartitioned_total",
            "Input messages not on the partition murmur2(customer_id) gives (unkeyed, or "
            "placed by another partitioner), rerouted by customer_id through the repartition "
            "topic, by source topic and reason; reason invalid: an invalid message carried to "
            "the privacy check of a customer whose partition another worker holds.",
            ["topic", "reason"],
            registry=r,
        )
        self.offset_gaps = Counter(
            "segmenter_input_offset_gaps_total",
            "Offsets of an input topic never delivered to the pipeline (Faust took them "
            "for a gap); should stay 0.",
            ["topic"],
            registry=r,
        )
        self.events_requeued = Counter(
            "segmenter_events_requeued_total",
            "Input events held for event-time order and handed back unprocessed at a stop "
            "or a rebalance; never acked, they are read again from the committed offset.",
            ["topic"],
            registry=r,
        )
        self.dead_letters = Counter(
            "segmenter_dead_letters_total",
            "Records written to the dead-letters topic, by source topic.",
            ["topic"],
            registry=r,
        )
        self.processing_seconds = Histogram(
            "segmenter_processing_seconds",
            "Time to process one event in the worker (validation to state write).",
            ["topic"],
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self.batch_events = Histogram(
            "segmenter_batch_messages",
            "Messages in one ingest batch (processed and committed together).",
            ["topic"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "segmenter_commit_seconds",
            "Time to commit one batch: outputs acknowledged, then state written "
            "(changelog acknowledged and local store), including waiting for earlier batches.",
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "segmenter_consumer_lag",
            "Messages between the committed/read offset and the end of the partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.events_held = Gauge(
            "segmenter_events_held",
            "Input events waiting for the other input topics of their partition to "
            "catch up in event time (see docs/segments.md, Replays and order).",
            registry=r,
        )
        self.events_released_early = Gauge(
            "segmenter_events_released_out_of_order",
            "Held events released before their turn because SEGMENTER_ORDER_MAX_HELD "
            "was reached (order traded for memory).",
            registry=r,
        )
        self.events_handled_out_of_order = Gauge(
            "segmenter_events_handled_out_of_order",
            "Input events handed to processing after a later event of their partition "
            "(released early for memory, a topic deemed idle or caught up that then "
            "brought an older event, or a producer that wrote a topic out of time order). "
            "Non-zero means a replay's outcome may differ from this run's.",
            registry=r,
        )
        self.stream_clock = Gauge(
            "segmenter_stream_clock_timestamp_seconds",
            "The stream clock (largest event time seen), as a Unix timestamp.",
            registry=r,
        )

        # -- output side --------------------------------------------------
        self.emit_latency = Histogram(
            "segmenter_event_to_emit_latency_seconds",
            "Wall clock at emit minus the Kafka timestamp of the input message.",
            ["output"],
            buckets=EMIT_LATENCY_BUCKETS,
            registry=r,
        )
        self.outputs = Counter(
            "segmenter_outputs_total",
            "Records produced to an output topic.",
            ["topic"],
            registry=r,
        )

        # -- state and segments -------------------------------------------
        self.table_keys = Gauge(
            "segmenter_table_keys",
            "Keys in a Faust table held by this worker (its active partitions).",
            ["table"],
            registry=r,
        )
        self.segment_size = Gauge(
            "segmenter_segment_size",
            "Customers currently in a segment (customers owned by this worker).",
            ["segment_type", "segment"],
            registry=r,
        )
        self.segment_transitions = Counter(
            "segmenter_segment_transitions_total",
            "Segment changes emitted, by segment type.",
            ["segment_type"],
            registry=r,
        )
        self.segment_flaps = Counter(
            "segmenter_segment_flaps_total",
            "Segment changes that return a customer to the segment it just left.",
            ["segment_type"],
            registry=r,
        )
        self.churn_level_customers = Gauge(
            "segmenter_churn_risk_level_customers",
            "Customers currently at a churn-risk level (owned by this worker).",
            ["level"],
            registry=r,
        )
        self.churn_events = Counter(
            "segmenter_churn_risk_events_total",
            "Churn-risk level changes emitted, by new level.",
            ["level"],
            registry=r,
        )
        # -- segment KPIs and experiments (additive: sum over workers) -------
        self.segment_kpi_customers = Gauge(
            "segmenter_segment_kpi_customers",
            "Customers of a segment (owned by this worker) counted by a KPI measure: "
            "members, active_30d, viewed_30d, converted_30d, churn_high, nps_promoters, "
            "nps_passives, nps_detractors, with_clv, entered_30d, exited_30d.",
            ["segment_type", "segment", "measure"],
            registry=r,
        )
        self.segment_kpi_amount = Gauge(
            "segmenter_segment_kpi_amount",
            "Money summed over a segment's members (owned by this worker): revenue_30d, "
            "clv_365d (predicted 365-day value).",
            ["segment_type", "segment", "measure"],
            registry=r,
        )
        self.experiment_customers = Gauge(
            "segmenter_experiment_customers",
            "Exposures of an experiment arm (customers owned by this worker) by measure: "
            "exposed, completed, active, purchased, churn_high (the last three over "
            "completed outcome windows).",
            ["experiment", "arm", "measure"],
            registry=r,
        )
        self.experiment_revenue = Gauge(
            "segmenter_experiment_revenue",
            "Revenue in the completed outcome windows of an experiment arm (this worker).",
            ["experiment", "arm"],
            registry=r,
        )

        # -- model ----------------------------------------------------------
        self.model_version = Gauge(
            "segmenter_model_version",
            "Version of the cluster model this worker assigns with (0: none yet).",
            registry=r,
        )
        self.model_last_refresh = Gauge(
            "segmenter_model_last_refresh_timestamp_seconds",
            "Wall-clock Unix time at which this worker loaded its current model.",
            registry=r,
        )
        self.model_clusters = Gauge(
            "segmenter_model_clusters",
            "Number of clusters (k) of the current model.",
            registry=r,
        )
        self.churn_model_revision = Gauge(
            "segmenter_churn_model_revision",
            "Revision of the churn model this worker scores with (0: the prior).",
            registry=r,
        )
        self.churn_model_learned = Gauge(
            "segmenter_churn_model_learned",
            "1 when the churn model's weights were learned from outcomes, 0 for the prior.",
            registry=r,
        )
        self.churn_model_outcomes = Gauge(
            "segmenter_churn_model_outcomes",
            "Matured churn outcomes the churn learner has learnt from.",
            registry=r,
        )
        self.churn_model_auc = Gauge(
            "segmenter_churn_model_auc",
            "Progressive-validation ROC AUC of the churn model on recent matured outcomes.",
            registry=r,
        )
        self.churn_model_brier = Gauge(
            "segmenter_churn_model_brier",
            "Progressive-validation Brier score of the churn model on recent matured outcomes.",
            registry=r,
        )
        self.model_as_of = Gauge(
            "segmenter_model_as_of_timestamp_seconds",
            "Stream time (event time) the current cluster model is as of: it moves once "
            "per day of stream time, once every partition is past the day.",
            registry=r,
        )
        self.model_records_rejected = Counter(
            "segmenter_model_records_rejected_total",
            "Records of the segment-models topic refused (and skipped): not JSON, a "
            "malformed snapshot, or a learner state that is not the data-only format.",
            ["reason"],
            registry=r,
        )
        self.cluster_samples_late = Counter(
            "segmenter_cluster_samples_late_total",
            "Cluster-model samples that reached the learner after the day they belong "
            "to had closed (their input partition had been reported complete). A replay "
            "folds them in before the close, so each one can make the live model "
            "timeline differ from a replay's (docs/clustering.md, Replays).",
            registry=r,
        )
        self.sweep_customers = Counter(
            "segmenter_sweep_customers_total",
            "Customers the daily pass visited, by what it did: evaluated (brought up to "
            "the pass's day), skipped (nothing can change before their due day: not even "
            "read), refreshed (skipped, but the learner's weekly sample of them taken), "
            "not_due (evaluated that day already, or opted out).",
            ["outcome"],
            registry=r,
        )
        self.sweep_seconds = Counter(
            "segmenter_sweep_seconds_total",
            "Time the daily pass spent on customers (reading, evaluating, planning, "
            "writing), in seconds.",
            registry=r,
        )
        self.cluster_change_rate = Gauge(
            "segmenter_cluster_changes_per_customer_30d",
            "Cluster changes (first assignments excluded) per customer over the last 30 "
            "days of stream time, over every partition's customers; steady behaviour "
            "should stay below 0.1.",
            registry=r,
        )

        # -- privacy and health -------------------------------------------
        self.privacy_requests = Counter(
            "segmenter_privacy_requests_total",
            "Privacy requests handled, by action.",
            ["action"],
            registry=r,
        )
        self.profile_attributes_rejected_total = Counter(
            "segmenter_profile_attributes_rejected",
            "Profile attributes dropped before they reached a customer's record: "
            "not on the allow-list, beyond the per-customer count, or too long.",
            ["reason"],
            registry=r,
        )
        self.worker_ready = Gauge(
            "segmenter_worker_ready",
            "1 when partitions are assigned, tables recovered and a model is loaded.",
            registry=r,
        )
        self.build_info = Info(
            "segmenter_build",
            "Version of the segmenter package and of Python.",
            registry=r,
        )
        self.build_info.info({"version": _package_version(), "python": _python_version()})

        # Children looked up once per label set: `labels()` costs more than the
        # increment itself, and these run for every event.
        self._consumed = functools.cache(self.events_consumed.labels)
        self._processed = functools.cache(self.events_processed.labels)
        self._duplicate = functools.cache(self.events_duplicate.labels)
        self._rejected = functools.cache(self.events_rejected.labels)
        self._repartitioned = functools.cache(self.events_repartitioned.labels)
        self._outputs = functools.cache(self.outputs.labels)
        self._processing = functools.cache(self.processing_seconds.labels)
        self._emit_latency = functools.cache(self.emit_latency.labels)

        if process_metrics:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        self._lag_keys: set[tuple[str, str]] = set()
        self._segments: dict[str, set[str]] = {}
        self._kpi_series: dict[Any, set[tuple[str, ...]]] = {}
        self._init_series(list(input_topics), list(output_topics), list(segment_types))

    # ------------------------------------------------------------------
    def _init_series(
        self, input_topics: list[str], output_topics: list[str], segment_types: list[str]
    ) -> None:
        """Create the known label combinations at 0 so rate() sees them from the start."""
        for topic in input_topics:
            self.events_consumed.labels(topic)
            self.events_processed.labels(topic)
            self.events_duplicate.labels(topic)
            self.dead_letters.labels(topic)
            self.processing_seconds.labels(topic)
            self.batch_events.labels(topic)
            for reason in sorted(REJECT_REASONS):
                self.events_rejected.labels(topic, reason)
            for reason in REPARTITION_REASONS:
                self.events_repartitioned.labels(topic, reason)
        for topic in output_topics:
            self.outputs.labels(topic)
        for output in LATENCY_OUTPUTS:
            self.emit_latency.labels(output)
        for segment_type in segment_types:
            self.segment_transitions.labels(segment_type)
            self.segment_flaps.labels(segment_type)
        for level in CHURN_LEVELS:
            self.churn_level_customers.labels(level)
            self.churn_events.labels(level)
        for action in PRIVACY_ACTIONS:
            self.privacy_requests.labels(action)
        for reason in ATTRIBUTE_REJECT_REASONS:
            self.profile_attributes_rejected_total.labels(reason)
        for table in TABLES:
            self.table_keys.labels(table)
        for reason in MODEL_REJECT_REASONS:
            self.model_records_rejected.labels(reason)

    # -- counters ----------------------------------------------------------
    def consumed(self, topic: str, n: int = 1) -> None:
        """Count ``n`` messages read from ``topic``."""
        self._consumed(topic).inc(n)

    def processed(self, topic: str, n: int = 1) -> None:
        """Count ``n`` events of ``topic`` applied to state."""
        self._processed(topic).inc(n)

    def rejected(self, topic: str, reason: str) -> None:
        """Count one rejected event; unknown reasons are counted as ``other``.

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry(), process_metrics=False)
        >>> m.rejected("support", "no-such-reason")
        >>> m.sample("segmenter_events_rejected_total", topic="support", reason="other")
        1.0
        """
        if reason not in REJECT_REASONS:
            reason = _OTHER_REASON
        self._rejected(topic, reason).inc()

    def duplicate(self, topic: str, n: int = 1) -> None:
        """Count ``n`` events skipped as repeated ``event_id`` s."""
        self._duplicate(topic).inc(n)

    def repartitioned(self, topic: str, reason: str) -> None:
        """Count one message of ``topic`` rerouted through the repartition topic.

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry(), process_metrics=False)
        >>> m.repartitioned("purchases", "unkeyed")
        >>> m.sample("segmenter_events_repartitioned_total", topic="purchases", reason="unkeyed")
        1.0
        """
        self._repartitioned(topic, reason).inc()

    def offset_gap(self, topic: str, offsets: int) -> None:
        """Count ``offsets`` offsets of ``topic`` that were skipped, not processed."""
        self.offset_gaps.labels(topic).inc(offsets)

    def requeued(self, topic: str) -> None:
        """Count one held event of ``topic`` handed back at a stop or a rebalance."""
        self.events_requeued.labels(topic).inc()

    def dead_letter(self, topic: str) -> None:
        """Count one dead-letter record whose source topic is ``topic``."""
        self.dead_letters.labels(topic).inc()

    def output(self, topic: str, n: int = 1) -> None:
        """Count ``n`` records produced to the output topic ``topic``."""
        self._outputs(topic).inc(n)

    def transition(self, segment_type: str, *, flap: bool = False) -> None:
        """Count one segment change of ``segment_type`` (and a flap when ``flap``).

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry(), process_metrics=False)
        >>> m.transition("value", flap=True)
        >>> m.sample("segmenter_segment_transitions_total", segment_type="value")
        1.0
        >>> m.sample("segmenter_segment_flaps_total", segment_type="value")
        1.0
        """
        self.segment_transitions.labels(segment_type).inc()
        if flap:
            self.segment_flaps.labels(segment_type).inc()

    def churn_event(self, level: str) -> None:
        """Count one churn-risk event whose new level is ``level``."""
        self.churn_events.labels(level).inc()

    def privacy_request(self, action: str) -> None:
        """Count one privacy request (``opt_out``, ``opt_in``, ``erase``)."""
        self.privacy_requests.labels(action).inc()

    def profile_attributes_rejected(self, reason: str, n: int = 1) -> None:
        """Count ``n`` profile attributes dropped for ``reason`` (see models.profile_policy)."""
        self.profile_attributes_rejected_total.labels(reason).inc(n)

    # -- histograms --------------------------------------------------------
    def observe_emit_latency(
        self, output: str, kafka_ts_ms: float | None, now: float | None = None
    ) -> float | None:
        """Observe wall clock ``now`` (default: time.time()) minus the input's Kafka timestamp.

        ``output`` is ``segment_changes`` or ``churn_risk``. Returns the observed
        latency in seconds, or ``None`` when the record carried no timestamp.
        Negative values (clock skew between broker and worker) count as 0.

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry(), process_metrics=False)
        >>> m.observe_emit_latency("churn_risk", 1_000_000, now=1_000.25)
        0.25
        >>> m.sample("segmenter_event_to_emit_latency_seconds_bucket",
        ...          output="churn_risk", le="0.25")
        1.0
        """
        if kafka_ts_ms is None or kafka_ts_ms <= 0:
            return None
        wall = time.time() if now is None else now
        latency = max(0.0, wall - kafka_ts_ms / 1000.0)
        self._emit_latency(output).observe(latency)
        return latency

    def observe_processing(self, topic: str, seconds: float) -> None:
        """Observe the time taken to process one event of ``topic``."""
        self._processing(topic).observe(seconds)

    def observe_processing_many(self, topic: str, seconds: list[float]) -> None:
        """Observe the processing times of several events of ``topic`` at once.

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry(), process_metrics=False)
        >>> m.observe_processing_many("purchases", [0.0001, 0.003, 2.0])
        >>> m.sample("segmenter_processing_seconds_count", topic="purchases")
        3.0
        """
        observe_many(self._processing(topic), seconds)

    def observe_batch(self, topic: str, events: int) -> None:
        """Observe the size of one ingest batch of ``topic``."""
        self.batch_events.labels(topic).observe(events)

    def observe_commit(self, seconds: float) -> None:
        """Observe the time one batch took to commit."""
        self.commit_seconds.observe(seconds)

    @contextmanager
    def time_processing(self, topic: str) -> Iterator[None]:
        """Context manager timing one event of ``topic`` (monotonic clock).

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry(), process_metrics=False)
        >>> with m.time_processing("feedback"):
        ...     pass
        >>> m.sample("segmenter_processing_seconds_count", topic="feedback")
        1.0
        """
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe_processing(topic, time.perf_counter() - start)

    # -- gauges ------------------------------------------------------------
    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        """Set the consumer lag (in messages) of one partition."""
        key = (topic, str(partition))
        self._lag_keys.add(key)
        self.consumer_lag.labels(*key).set(max(0, lag))

    def set_consumer_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Replace all lag series by ``{(topic, partition): lag}``.

        Partitions no longer assigned (after a rebalance) lose their series.

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry(), process_metrics=False)
        >>> m.set_consumer_lag({("purchases", 0): 5, ("purchases", 1): 0})
        >>> m.set_consumer_lag({("purchases", 1): 2})
        >>> m.sample("segmenter_consumer_lag", topic="purchases", partition="0") is None
        True
        >>> m.sample("segmenter_consumer_lag", topic="purchases", partition="1")
        2.0
        """
        wanted = {(topic, str(partition)): lag for (topic, partition), lag in lags.items()}
        for key in self._lag_keys - wanted.keys():
            self.consumer_lag.remove(*key)
        self._lag_keys = set(wanted)
        for key, lag in wanted.items():
            self.consumer_lag.labels(*key).set(max(0, lag))

    def clear_lag(self) -> None:
        """Drop every lag series (e.g. when partitions are revoked)."""
        self.set_consumer_lag({})

    def set_table_keys(self, table: str, n: int) -> None:
        """Set the number of keys of ``table`` held locally."""
        self.table_keys.labels(table).set(n)

    def set_segment_sizes(self, segment_type: str, sizes: Mapping[str, int]) -> None:
        """Replace the sizes of all segments of ``segment_type`` by ``sizes``.

        Segments absent from ``sizes`` (e.g. a cluster removed when k shrank)
        lose their series.
        """
        known = self._segments.setdefault(segment_type, set())
        for segment in known - sizes.keys():
            self.segment_size.remove(segment_type, segment)
        known.clear()
        for segment, size in sizes.items():
            known.add(str(segment))
            self.segment_size.labels(segment_type, str(segment)).set(size)

    def set_segment_kpis(self, totals: Any, today: int) -> None:
        """Export this worker's KPI sums (a :class:`models.kpis.Totals`) as of day ``today``.

        Series of segments and experiments that disappeared are removed.

        >>> from prometheus_client import CollectorRegistry
        >>> from models.kpis import Totals
        >>> m = Metrics(CollectorRegistry(), process_metrics=False)
        >>> m.set_segment_kpis(Totals(seg={"value.high": [3, 2, 1, 1, 0, 1, 0, 0, 90.0, 600.0, 3]},
        ...                           days={7: {"value.high": [2, 0]}}), today=7)
        >>> m.sample("segmenter_segment_kpi_customers", segment_type="value", segment="high",
        ...          measure="entered_30d")
        2.0
        >>> m.sample("segmenter_segment_kpi_amount", segment_type="value", segment="high",
        ...          measure="clv_365d")
        600.0
        """
        from models.kpis import WINDOW_DAYS

        counts: dict[tuple[str, ...], float] = {}
        amounts: dict[tuple[str, ...], float] = {}
        for key, sums in totals.seg.items():
            seg_type, _, segment = key.partition(".")
            for measure, index in _KPI_COUNTS:
                counts[(seg_type, segment, measure)] = sums[index]
            amounts[(seg_type, segment, "revenue_30d")] = sums[8]
            amounts[(seg_type, segment, "clv_365d")] = sums[9]
        windowed: dict[str, list[int]] = {}
        for day, bucket in totals.days.items():
            if today - WINDOW_DAYS < day <= today:
                for key, (entered, exited) in bucket.items():
                    sums = windowed.setdefault(key, [0, 0])
                    sums[0] += entered
                    sums[1] += exited
        for key, (entered, exited) in windowed.items():
            seg_type, _, segment = key.partition(".")
            counts[(seg_type, segment, "entered_30d")] = entered
            counts[(seg_type, segment, "exited_30d")] = exited
        people: dict[tuple[str, ...], float] = {}
        revenue: dict[tuple[str, ...], float] = {}
        for name, arms in totals.xp.items():
            for arm, sums in arms.items():
                for measure, index in _EXPERIMENT_COUNTS:
                    people[(name, arm, measure)] = sums[index]
                revenue[(name, arm)] = sums[4]
        self._replace(self.segment_kpi_customers, counts)
        self._replace(self.segment_kpi_amount, amounts)
        self._replace(self.experiment_customers, people)
        self._replace(self.experiment_revenue, revenue)

    def _replace(self, gauge: Gauge, values: Mapping[tuple[str, ...], float]) -> None:
        """Set ``gauge``'s series to ``values``; remove the series not in it."""
        known = self._kpi_series.setdefault(gauge, set())
        for labels in known - values.keys():
            gauge.remove(*labels)
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        known.clear()
        known.update(values)

    def set_churn_levels(self, counts: Mapping[str, int]) -> None:
        """Set the number of customers per churn level; missing levels are 0."""
        for level in CHURN_LEVELS:
            self.churn_level_customers.labels(level).set(counts.get(level, 0))
        for level, n in counts.items():
            if level not in CHURN_LEVELS:
                self.churn_level_customers.labels(level).set(n)

    def model_refreshed(
        self, version: int, clusters: int, when: float | None = None, as_of_ms: int | None = None
    ) -> None:
        """Record that model ``version`` with ``clusters`` clusters was loaded at ``when``.

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry(), process_metrics=False)
        >>> m.model_refreshed(3, 5, when=1_700_000_000.0)
        >>> m.sample("segmenter_model_version"), m.sample("segmenter_model_clusters")
        (3.0, 5.0)
        """
        self.model_version.set(version)
        self.model_clusters.set(clusters)
        self.model_last_refresh.set(time.time() if when is None else when)
        if as_of_ms is not None:
            self.model_as_of.set(as_of_ms / 1000.0)

    def model_record_rejected(self, reason: str) -> None:
        """Count one refused ``segment-models`` record (``unreadable``, ``snapshot``, ``state``).

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry(), process_metrics=False)
        >>> m.model_record_rejected("state")
        >>> m.sample("segmenter_model_records_rejected_total", reason="state")
        1.0
        """
        self.model_records_rejected.labels(reason).inc()

    def sweep_chunk(self, outcomes: Mapping[str, int], seconds: float) -> None:
        """Count a chunk of the daily pass: customers per outcome, and its time.

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry(), process_metrics=False)
        >>> m.sweep_chunk({"evaluated": 3, "skipped": 90, "not_due": 7}, 0.01)
        >>> m.sample("segmenter_sweep_customers_total", outcome="skipped")
        90.0
        """
        for outcome, count in outcomes.items():
            if count:
                self.sweep_customers.labels(outcome).inc(count)
        self.sweep_seconds.inc(seconds)

    def cluster_samples_arrived_late(self, count: int) -> None:
        """Count samples the learner took in after their day had closed.

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics(CollectorRegistry(), process_metrics=False)
        >>> m.cluster_samples_arrived_late(3)
        >>> m.sample("segmenter_cluster_samples_late_total")
        3.0
        """
        self.cluster_samples_late.inc(count)

    def set_cluster_change_rate(self, rate: float) -> None:
        """Set the cluster changes per customer per 30 days of stream time."""
        self.cluster_change_rate.set(rate)

    def churn_model_installed(
        self, revision: int, learned: bool, validation: Mapping[str, Any]
    ) -> None:
        """Record the churn model a worker now scores with and its progressive validation.

        >>> m = Metrics(CollectorRegistry())
        >>> m.churn_model_installed(4, True, {"labels": 5000, "auc": 0.81, "brier": 0.12})
        >>> m.sample("segmenter_churn_model_auc"), m.sample("segmenter_churn_model_revision")
        (0.81, 4.0)
        """
        self.churn_model_revision.set(revision)
        self.churn_model_learned.set(1 if learned else 0)
        self.churn_model_outcomes.set(float(validation.get("labels", 0)))
        for gauge, key in ((self.churn_model_auc, "auc"), (self.churn_model_brier, "brier")):
            value = validation.get(key)
            gauge.set(float("nan") if value is None else float(value))

    def set_stream_clock(self, clock_ms: int) -> None:
        """Set the stream clock from epoch milliseconds."""
        self.stream_clock.set(clock_ms / 1000.0)

    def set_events_held(self, held: int, released_early: int, out_of_order: int = 0) -> None:
        """Set the event-time ordering's held, released-early and out-of-order counts."""
        self.events_held.set(held)
        self.events_released_early.set(released_early)
        self.events_handled_out_of_order.set(out_of_order)

    def set_ready(self, ready: bool) -> None:
        """Set ``segmenter_worker_ready`` to 1 or 0."""
        self.worker_ready.set(1 if ready else 0)

    # -- introspection -----------------------------------------------------
    def sample(self, name: str, **labels: str) -> float | None:
        """Current value of the sample ``name`` with exactly ``labels``, or ``None``."""
        return self.registry.get_sample_value(name, labels)


def _package_version() -> str:
    try:
        return version("segmenter")
    except PackageNotFoundError:
        return "unknown"


def _python_version() -> str:
    return "{}.{}.{}".format(*sys.version_info[:3])


_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def exported_names(registry: CollectorRegistry) -> frozenset[str]:
    """Every sample name ``registry`` can expose, whether or not a series exists yet.

    Counters appear as ``<name>_total`` and histograms as ``<name>_bucket``,
    ``_count`` and ``_sum``, exactly as PromQL sees them.

    >>> from prometheus_client import CollectorRegistry
    >>> names = exported_names(Metrics(CollectorRegistry(), process_metrics=False).registry)
    >>> "segmenter_events_processed_total" in names
    True
    >>> "segmenter_event_to_emit_latency_seconds_bucket" in names
    True
    """
    names: set[str] = set()
    for family in registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(s.name for s in family.samples)
    return frozenset(names)


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format (served with :data:`CONTENT_TYPE`)."""
    return generate_latest(registry)


def content_type() -> str:
    """Content type of :func:`render`'s output."""
    return CONTENT_TYPE


def exposition(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """Body and content type for a ``/metrics`` request with ``Accept: accept``.

    Negotiates OpenMetrics when the scraper asks for it, else the text format.

    >>> from prometheus_client import CollectorRegistry
    >>> body, ctype = exposition(CollectorRegistry(), "text/plain")
    >>> ctype.startswith("text/plain")
    True
    """
    encoder, ctype = choose_encoder(accept or "")
    return encoder(registry), ctype


#: Metric names exported by a default :class:`Metrics` (segmenter_* only).
METRIC_NAMES: frozenset[str] = frozenset(
    n
    for n in exported_names(Metrics(CollectorRegistry(), process_metrics=False).registry)
    if n.startswith("segmenter_")
)


def observe_many(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for every value, with one increment per bucket.

    Observing one value takes a lock per increment; a batch's processing times
    share a few buckets. Falls back to one ``observe`` each on a histogram
    without prometheus-client's bucket layout.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1
    total.inc(math.fsum(values))
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
