"""The Faust application: ``create_app(settings)`` and a module-level ``app``.

``create_app`` reads nothing at import time; the module-level ``app`` (for
``faust -A streams.worker.app``) is built on first access from the environment.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from models.churn import ChurnScorer, level_thresholds
from models.churn_outcomes import ChurnTracking
from models.eventtime import MS_PER_DAY
from models.experiments import load_segments_config
from models.kpis import KpiTracker
from models.ordering import EventTimeOrder
from models.processing import CustomerProcessor
from models.profile_policy import AttributePolicy
from models.rules import RuleEngine, RulesConfig
from streams.logs import handlers_for
from streams.settings import Settings
from streams.topics import (
    CLOCK_TOPIC,
    INPUT_TOPICS,
    MODELS_TOPIC,
    OUTPUT_TOPICS,
    TICKS_TOPIC,
    TRAINING_TOPIC,
)
from streams.worker import faust_adapter
from streams.worker.assignment import (
    IDLE_SECONDS,
    assigned_inputs,
    assigned_partitions,
    caught_up_test,
)
from streams.worker.broadcast import run_broadcast_reader
from streams.worker.daily_sweep import install_daily_sweep
from streams.worker.faust_adapter import read_offset
from streams.worker.http_security import bearer_auth, disable_faust_routes
from streams.worker.learner_salt import resolve_learner_salt
from streams.worker.learning import install_learning
from streams.worker.metrics import Metrics
from streams.worker.monitor import LeanMonitor
from streams.worker.outbox import ProducerTopic
from streams.worker.pipeline import Pipeline
from streams.worker.repartition import REPARTITION_TOPIC
from streams.worker.reroute_merge import event_time_topics
from streams.worker.runtime import Runtime
from streams.worker.state_table import StateTable, producer_send
from streams.worker.wakeup import install_loop

__all__ = ["create_app"]

log = logging.getLogger(__name__)

FETCH_BYTES_PER_PARTITION = 64 * 1024  # ≈ 250 input records
RELEASE_INTERVAL_SECONDS = 0.2
# Faust's RocksDB defaults (64 MB x 3 write buffers, a 2 GB block cache) apply
# per partition database: bound them so memory does not scale with partitions.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 16 << 20,
    "max_write_buffer_number": 2,
    "block_cache_size": 64 << 20,
    "block_cache_compressed_size": 16 << 20,
}


def broker_urls(bootstrap: str) -> list[str]:
    """Faust broker URLs from a Kafka bootstrap list.

    >>> broker_urls("a:9092,b:9093")
    ['kafka://a:9092', 'kafka://b:9093']
    """
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def build_runtime(settings: Settings) -> Runtime:
    """The worker's shared state and logic, without any Kafka wiring."""
    config, experiments = (
        load_segments_config(settings.segments_config)
        if settings.segments_config
        else (RulesConfig(), ())
    )
    policy = AttributePolicy(
        frozenset(settings.profile_attributes),
        settings.profile_max_attributes,
        settings.profile_max_value_chars,
    )
    check_rules_read_allowed_attributes(config, policy)
    rules = RuleEngine(config)
    processor = CustomerProcessor(
        rules=rules,
        scorer=ChurnScorer(),
        dedup_window_ms=int(settings.dedup_window_days * MS_PER_DAY),
        rules_version=rules_version(config),
        tracker=KpiTracker(experiments),
        tracking=ChurnTracking(
            horizon_days=settings.churn_horizon_days,
            label=settings.churn_label,
            snapshot_every=settings.churn_snapshot_every_days,
            offset_days=settings.churn_offset_days,
        ),
        thresholds=level_thresholds(settings.churn_medium_threshold, settings.churn_high_threshold),
    )
    return Runtime(
        settings=settings,
        metrics=Metrics(CollectorRegistry()),
        processor=processor,
        worker_id=f"{settings.reachable_host()}:{settings.web_port}",
        profile_policy=policy,
        experiments=experiments,
    )


def check_rules_read_allowed_attributes(config: RulesConfig, policy: AttributePolicy) -> None:
    """A rule on a profile attribute that is never kept could never match: say so at start."""
    for rule in config.user_rules:
        for case in rule.cases:
            for name in sorted(case.when.features_used):
                attribute = name.split(".")[1] if name.startswith("profile.") else None
                if attribute is not None and attribute not in policy.allowed:
                    raise ValueError(
                        f"rule {rule.name!r} reads {name}, but profile attribute "
                        f"{attribute!r} is not kept: add it to SEGMENTER_PROFILE_ATTRIBUTES "
                        f"(e.g. SEGMENTER_PROFILE_ATTRIBUTES=+{attribute})"
                    )


def rules_version(config: RulesConfig) -> str:
    """A short, stable version of the rule configuration (changes when it does)."""
    digest = hashlib.blake2b(repr(config).encode(), digest_size=4).hexdigest()
    return f"rules-{digest}"


def faust_app(settings: Settings, datadir: Any) -> faust_adapter.BatchApp:
    """The Faust app with the worker's settings; its input topics go through the
    batch consumer path (:mod:`streams.worker.faust_adapter`)."""
    return faust_adapter.BatchApp(
        settings.app_id,
        monitor=LeanMonitor(),
        broker=broker_urls(settings.kafka_bootstrap),
        store=settings.store,
        datadir=str(datadir),
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.reachable_host(),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        producer_linger_ms=1,
        broker_commit_every=2000,
        broker_commit_interval=1.0,
        broker_max_poll_records=settings.batch_size,  # most records one fetch hands over
        # aiokafka hands out a partition's fetched records before the next
        # partition's: small per-partition fetches keep every partition moving,
        # so none looks idle to the event-time order while another is drained.
        consumer_max_fetch_size=FETCH_BYTES_PER_PARTITION,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 5),
        loghandlers=handlers_for(settings.log_format) or [],
        web_application_options=web_options(settings),
    )


def event_time_order(settings: Settings) -> EventTimeOrder | None:
    """The event-time order of each partition's inputs (none with ``order_max_held = 0``).

    Rerouted events wait in it as one stream per source partition
    (:mod:`streams.worker.reroute_merge`); privacy requests never wait for the cluster
    model (:mod:`models.ordering`, ``unpaced``).
    """
    if settings.order_max_held <= 0:
        return None
    ordered_topics = event_time_topics(settings.partitions)
    return EventTimeOrder(
        ordered_topics,
        max_held=settings.order_max_held,
        unpaced=frozenset(t for t in ordered_topics if t.split("@")[0] == "privacy"),
    )


def create_app(settings: Settings | None = None) -> faust.App:
    """Build a Segmenter worker app from ``settings`` (default: the environment)."""
    settings = settings or Settings()
    datadir = settings.data_dir / f"worker-{settings.web_port}"
    datadir.mkdir(parents=True, exist_ok=True)
    rt = build_runtime(settings)
    app = faust_app(settings, datadir)
    disable_faust_routes(app)  # no /table/… (raw records), /router/… (topology)
    app.segmenter = rt  # type: ignore[attr-defined]

    def raw_topic(name: str, partitions: int | None = None) -> Any:
        # Bytes in and out: we parse and validate ourselves, with orjson.
        return app.topic(
            settings.topic(name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
        )

    # The repartition topic is one more input of each partition: messages that
    # landed on another partition than their customer's come back on it.
    inputs = {name: raw_topic(name) for name in (*INPUT_TOPICS, REPARTITION_TOPIC)}
    # Outputs go straight to the producer (see streams.worker.outbox); the topics are
    # created by `segmenter topics create`.
    outputs = {
        name: ProducerTopic(app, settings.topic(name))
        for name in (*OUTPUT_TOPICS, REPARTITION_TOPIC, CLOCK_TOPIC)
    }
    training = raw_topic(TRAINING_TOPIC, partitions=1)
    models = raw_topic(MODELS_TOPIC, partitions=1)
    clock_topic = raw_topic(CLOCK_TOPIC, partitions=1)
    ticks = raw_topic(TICKS_TOPIC)

    customers = bytes_table(app, settings.topic("customers"), settings.partitions)
    suppressions = bytes_table(app, settings.topic("suppressions"), settings.partitions)
    send = producer_send(app)
    pipeline = Pipeline(
        rt,
        StateTable(customers, send),
        StateTable(suppressions, send),
        outputs,
        # Rerouted events wait in the event-time order as one stream per source
        # partition (streams.worker.reroute_merge).
        order=event_time_order(settings),
        caught_up=caught_up_test(app, settings),
        holds=lambda partition: partition in assigned_partitions(app, settings.topic("purchases")),
        sources=lambda: assigned_inputs(app, settings),
        idle_seconds=IDLE_SECONDS,
    )
    app.pipeline = pipeline  # type: ignore[attr-defined]
    app.register_batch_topics(list(inputs.values()), IngestSink(pipeline, rt))
    app.on_gap = lambda topic, offsets: rt.metrics.offset_gap(
        settings.logical_topic(topic), offsets
    )

    app.passes = install_daily_sweep(  # type: ignore[attr-defined]
        app, rt, pipeline, customers, ticks, clock_topic
    )
    install_learning(app, settings, rt, pipeline, training, models, outputs)
    _install_release_timer(app, settings, rt, pipeline)
    _install_lag_gauge(app, rt)

    @app.task
    async def broadcast_reader() -> None:
        # No event is handled before this is done (the agents wait for the
        # broadcast topics), so every learner key is salted.
        if rt.learner_salt is None:
            rt.learner_salt = await resolve_learner_salt(settings)
        await run_broadcast_reader(rt)

    from streams.worker.web import register_views

    register_views(app, rt, customers, inputs["purchases"])
    return app


def _install_release_timer(
    app: faust.App, settings: Settings, rt: Runtime, pipeline: Pipeline
) -> None:
    fetch_hold = pipeline.fetch_hold

    async def release_held_events() -> None:
        # Held events whose turn came without a new message (a topic caught up).
        try:
            await pipeline.release_due()
            # Input partitions read past the cluster model's pace wait for it
            # (streams.worker.model_pace); a rerouted stream is never held back here.
            ahead = [
                TP(settings.topic(topic), partition)
                for topic, partition in (pipeline.order.past_limit() if pipeline.order else [])
                if "@" not in topic
            ]
            fetch_hold.update(app.consumer, ahead)
        except Exception:
            log.exception("could not release held events; retrying")
        order = pipeline.order
        if order is not None:
            rt.metrics.set_events_held(len(order), order.forced, order.late)

    # Five times a second, or as soon as a newer cluster model arrived (streams.worker.wakeup).
    install_loop(app, RELEASE_INTERVAL_SECONDS, rt.wakeups.release, release_held_events)


def _install_lag_gauge(app: faust.App, rt: Runtime) -> None:
    @app.timer(interval=5.0)
    async def observe_lag() -> None:
        lags: dict[tuple[str, int], int] = {}
        consumer = app.consumer
        for tp in consumer.assignment():
            try:
                highwater = consumer.highwater(tp)
            except Exception:
                continue
            read = read_offset(consumer, tp)
            if highwater is not None:
                lags[(tp.topic, tp.partition)] = max(0, highwater - ((read or -1) + 1))
        rt.metrics.set_consumer_lag(lags)


def web_options(settings: Settings) -> dict[str, Any]:
    """aiohttp application options: the bearer-token check when a token is set."""
    if settings.api_token is None:
        return {}
    return {"middlewares": [bearer_auth(settings.api_token.get_secret_value())]}


def bytes_table(app: faust.App, name: str, partitions: int) -> Any:
    """A table whose values are raw bytes: serialised once (orjson) for the store
    and the changelog alike, where Faust's JSON codec would serialise twice per
    write. Keys keep Faust's JSON encoding (recovery decodes them with it)."""
    table: Any = app.Table(
        name,
        partitions=partitions,
        key_type=str,
        value_type=bytes,
        default=None,
        options=ROCKSDB_OPTIONS,
    )
    table.value_serializer = "raw"
    return table


class IngestSink:
    """The input topics' records, a fetch at a time, into the pipeline
    (the :class:`streams.worker.faust_adapter.BatchSink` of the worker)."""

    def __init__(self, pipeline: Pipeline, rt: Runtime) -> None:
        self.pipeline = pipeline
        self.rt = rt

    async def handle(self, segments: Any) -> list[asyncio.Future[bool]]:
        if not self.rt.broadcast_caught_up.is_set():
            # Start with the shared stream clock and the latest model.
            await self.rt.broadcast_caught_up.wait()
        logical = self.rt.settings.logical_topic
        submissions = await self.pipeline.submit_many(
            [(logical(tp.topic), records) for tp, records in segments]
        )
        # The next fetch comes while this batch commits (its outputs are already
        # with the producer): the commits of the batches processed meanwhile go
        # together (group commit). Measured: a p99 event-to-emit 1.5 to 3 times
        # lower than waiting for each commit (docs/benchmark.md). The records are
        # acked when their futures resolve (records held for event-time order later).
        return [submission.done for submission in submissions]

    def drop_held(self) -> int:
        return self.pipeline.drop_held()


_app: faust.App | None = None


def __getattr__(name: str) -> Any:
    # ``app`` is built on first access, so importing this module reads no settings.
    if name == "app":
        global _app
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(name)
