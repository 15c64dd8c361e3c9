"""The Faust application: ``create_app(settings)`` and a module-level ``app``.

``create_app`` reads nothing at import time; the module-level ``app`` (for
``faust -A streams.app``) is built on first access from the environment.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import orjson
from faust.types import TP
from prometheus_client import CollectorRegistry

from models.churn import ChurnScorer, level_thresholds
from models.churn_outcomes import ChurnTracking
from models.eventtime import MS_PER_DAY, day_of
from models.experiments import load_segments_config
from models.kpis import KpiTracker
from models.profile_policy import AttributePolicy
from models.rules import RuleEngine, RulesConfig
from streams import faust_adapter
from streams.broadcast import run_broadcast_reader
from streams.churn_learner import CHURN_MODEL_KEY
from streams.churn_runner import ChurnLearnerRunner
from streams.codec import encode
from streams.faust_adapter import committed_offset, read_offset
from streams.http_security import bearer_auth, disable_faust_routes
from streams.learner import LearnerHost
from streams.learner_salt import resolve_learner_salt
from streams.logs import handlers_for
from streams.metrics import Metrics
from streams.model_events import MODEL_KEY, model_change_events
from streams.monitor import LeanMonitor
from streams.ordering import EventTimeOrder
from streams.outbox import ProducerTopic
from streams.pipeline import Pipeline
from streams.processing import CustomerProcessor
from streams.repartition import REPARTITION_TOPIC
from streams.reroute_merge import event_time_topics
from streams.runtime import Runtime
from streams.settings import Settings
from streams.state_table import StateTable, producer_send
from streams.sweep import PartitionSweep, partition_keys
from streams.topics import (
    CLOCK_TOPIC,
    INPUT_TOPICS,
    MODELS_TOPIC,
    OUTPUT_TOPICS,
    TICKS_TOPIC,
    TRAINING_TOPIC,
)

__all__ = ["create_app"]

log = logging.getLogger(__name__)

SWEEP_CHUNK = 2000
FETCH_BYTES_PER_PARTITION = 64 * 1024  # ≈ 250 input records
TRAINING_ITEMS_PER_MESSAGE = 1000  # training samples are a few hundred bytes each
IDLE_SECONDS = 5.0  # a topic-partition silent this long no longer holds others back
SWEEP_EVERY_SECONDS = 600.0  # also refresh segment statistics this often (wall clock)
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


def create_app(settings: Settings | None = None) -> faust.App:
    """Build a Segmenter worker app from ``settings`` (default: the environment)."""
    settings = settings or Settings()
    datadir = settings.data_dir / f"worker-{settings.web_port}"
    datadir.mkdir(parents=True, exist_ok=True)
    rt = build_runtime(settings)
    # The input topics go through a batch consumer path (streams.faust_adapter).
    app = faust_adapter.BatchApp(
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
    # Outputs go straight to the producer (see streams.outbox); the topics are
    # created by `segmenter topics create`.
    outputs = {
        name: ProducerTopic(app, settings.topic(name))
        for name in (*OUTPUT_TOPICS, REPARTITION_TOPIC)
    }
    training = raw_topic(TRAINING_TOPIC, partitions=1)
    models = raw_topic(MODELS_TOPIC, partitions=1)
    clock_topic = raw_topic(CLOCK_TOPIC, partitions=1)
    ticks = raw_topic(TICKS_TOPIC)

    customers = bytes_table(app, settings.topic("customers"), settings.partitions)
    suppressions = bytes_table(app, settings.topic("suppressions"), settings.partitions)
    send = producer_send(app)
    ordered_topics = event_time_topics(settings.partitions)
    pipeline = Pipeline(
        rt,
        StateTable(customers, send),
        StateTable(suppressions, send),
        outputs,
        # Rerouted events wait in the event-time order as one stream per source
        # partition (streams.reroute_merge).
        order=EventTimeOrder(
            ordered_topics,
            max_held=settings.order_max_held,
            # privacy requests never wait for the cluster model (streams.ordering)
            unpaced=frozenset(t for t in ordered_topics if t.split("@")[0] == "privacy"),
        )
        if settings.order_max_held > 0
        else None,
        caught_up=_caught_up_test(app, settings),
        holds=lambda partition: partition in assigned_partitions(app, settings.topic("purchases")),
        sources=lambda: _assigned_inputs(app, settings),
        idle_seconds=IDLE_SECONDS,
    )
    app.pipeline = pipeline  # type: ignore[attr-defined]
    app.register_batch_topics(list(inputs.values()), IngestSink(pipeline, rt))
    app.on_gap = lambda topic, offsets: rt.metrics.offset_gap(
        settings.logical_topic(topic), offsets
    )

    sweeps: dict[int, PartitionSweep] = {}

    @app.agent(ticks, name="segmenter.clock-ticks", concurrency=1)
    async def on_tick(stream: Any) -> None:
        async for event in stream.events():
            partition = event.message.partition
            sweep = sweeps.get(partition)
            if sweep is None:
                # Every customer whose events are handled must be in the store
                # before the pass lists the keys (see Runtime.reviewed_through).
                await pipeline.drain()
                sweep = PartitionSweep(clock_ms=pipeline.sweep_clock(partition))
                sweeps[partition] = sweep
                rt.kpis.begin_pass(partition)  # the pass sums the KPIs again (models.kpis)
            try:
                # Committed first, so every customer handled so far is listed.
                await pipeline.drain()
                keys, cursor = partition_keys(customers, partition, sweep.cursor, SWEEP_CHUNK)
                rt.kpis.listed(partition, [orjson.dumps(key) for key in keys])
                await pipeline.review_partition(keys, partition, sweep)
            except Exception:  # never let a timer stop the worker; the next tick retries
                log.exception("sweep of partition %s failed", partition)
                sweeps.pop(partition, None)
                rt.kpis.abort_pass(partition)
                continue
            if len(keys) < SWEEP_CHUNK:  # the pass is complete
                finish_sweep(rt, partition, sweep)
                sweeps.pop(partition, None)
            else:
                sweep.cursor = cursor

    learner = LearnerHost(rt)
    # Refits and the BG/NBD fit take up to seconds: they run on one thread of
    # their own (so they stay serialised) while the event loop keeps ingesting.
    learner_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learner")

    async def off_loop(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(learner_thread, fn, *args)

    @app.agent(training, name="segmenter.learner", concurrency=1)
    async def on_training(stream: Any) -> None:
        async for value in stream:
            await rt.broadcast_caught_up.wait()  # resume from the latest snapshot first
            try:
                batch = orjson.loads(value)
                # A frozen model (SEGMENTER_LEARNING=false) learns nothing, but an
                # erasure still removes the customer's sample and is republished.
                items = batch.get("items", [])
                forgotten = await off_loop(
                    learner.learn, items, settings.learning, batch.get("through")
                )
                if settings.learning:
                    await off_loop(churn.learn, items)
                # The model moves on in stream time: once every input partition is
                # past a period (a day), it is refitted and published; never on
                # the wall clock, so a replay gives the same model timeline. After
                # an erasure or opt-out at once: the previous snapshot on
                # segment-models still holds the sample (until compaction).
                changed = settings.learning and await off_loop(learner.advance)
                # (a day closed without a change is published too: workers pace
                # themselves on the model's as_of, streams.model_pace)
                moved_on = settings.learning and learner.moved_on()
                if changed or forgotten or moved_on:
                    announced = learner.published_version
                    message = await off_loop(learner.snapshot_message)
                    # Announced (and acknowledged) before the snapshot that marks
                    # them announced: a learner that moves or restarts in between
                    # resumes from the previous snapshot and announces the same
                    # changes again, with the same event ids; never none of them.
                    sent = [
                        await outputs["segment-changes"].send(
                            key=MODEL_KEY.encode(), value=encode(event)
                        )
                        for event in model_change_events(message["snapshot"], announced)
                    ]
                    for delivery in sent:
                        await delivery
                    await models.send(key=b"clusters", value=encode(message))
            except Exception:  # a bad batch must not stop the worker
                log.exception("learner failed on a training batch; batch skipped")

    # partition -> samples complete through (ms), as last sent to the learner
    sent_through: dict[str, int] = {}
    last_training_send = [0.0]

    churn = ChurnLearnerRunner(rt, lambda: _owns_training(app, settings))

    @app.timer(interval=10.0)
    async def refit_and_publish_churn_model() -> None:
        # Only the owner of the training partition learns; refits follow the stream clock.
        if not settings.learning or not rt.broadcast_caught_up.is_set():
            return
        try:
            message = await off_loop(churn.step)
        except Exception:
            log.exception("churn learner step failed; retrying at the next tick")
            return
        if message is not None:
            await models.send(key=CHURN_MODEL_KEY, value=encode(message))

    @app.timer(interval=0.5)
    async def flush_training() -> None:
        through: dict[str, int] = {}
        for partition in assigned_partitions(app, settings.topic("purchases")):
            mark = pipeline.training_through(partition)
            if mark is not None:
                through[str(partition)] = mark
        wall = time.monotonic()
        if rt.training_buffer or through != sent_through or wall - last_training_send[0] > 5.0:
            batch, rt.training_buffer = rt.training_buffer, []
            # In messages well below the producer's 1 MB request limit: a backlog
            # gives more samples per half second than one message may carry. The
            # last one says how far in stream time every sample is in.
            starts = range(0, len(batch), TRAINING_ITEMS_PER_MESSAGE) or [0]
            for start in starts:
                message: dict[str, Any] = {
                    "worker": rt.worker_id,
                    "items": batch[start : start + TRAINING_ITEMS_PER_MESSAGE],
                }
                if start == starts[-1]:
                    message["through"] = through
                await training.send(value=encode(message))
            sent_through.clear()
            sent_through.update(through)
            last_training_send[0] = wall

    # partition -> (stream day, wall time, model version) when its last pass started
    last_pass: dict[int, tuple[int, float, str | None]] = {}

    fetch_hold = pipeline.fetch_hold

    @app.timer(interval=0.2)
    async def release_held_events() -> None:
        # Held events whose turn came without a new message (a topic caught up).
        try:
            await pipeline.release_due()
            # Input partitions read past the cluster model's pace wait for it
            # (streams.model_pace); a rerouted stream is never held back here.
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

    @app.timer(interval=1.0)
    async def tick_and_publish_clock() -> None:
        rt.metrics.set_stream_clock(rt.clock.now_ms)
        wall = time.monotonic()
        assigned = assigned_partitions(app, settings.topic("purchases"))
        for partition in set(rt.kpis.partitions) - set(assigned):
            rt.kpis.drop(partition)  # moved to another worker
        for partition in assigned:
            now = pipeline.sweep_clock(partition)
            # A running pass goes on; a new one starts when the stream clock enters
            # a new day (silent customers move on), when a new model arrives
            # (customers move to its clusters), or every SWEEP_EVERY_SECONDS
            # (fresh segment statistics).
            model = rt.assigner_signature()
            day, started, seen_model = last_pass.get(partition, (-1, 0.0, None))
            # (now is 0 while the partition's first events are still to come.)
            if (
                partition in sweeps
                or not rt.kpis.derived(partition)  # new here: derive its KPI sums
                or (
                    now > 0
                    and (
                        day_of(now) > day
                        or model != seen_model
                        or wall - started > SWEEP_EVERY_SECONDS
                    )
                )
            ):
                if partition not in sweeps:
                    last_pass[partition] = (day_of(now), wall, model)
                await ticks.send(value=b"{}", partition=partition)
            stats = rt.partition_stats.get(partition, {})
            message = {"clock_ms": rt.partition_clock.get(partition, 0), **stats}
            # Until derived here, the KPI sums its previous owner published stand.
            kpis = rt.kpis.record(partition) or rt.remote_stats.get(f"p{partition}", {}).get("kpis")
            if kpis is not None:
                message["kpis"] = kpis
            if message != rt.remote_stats.get(f"p{partition}"):
                await clock_topic.send(key=f"p{partition}".encode(), value=encode(message))
        rt.metrics.set_segment_kpis(rt.kpis.local_totals(assigned), day_of(rt.clock.now_ms))

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

    @app.task
    async def broadcast_reader() -> None:
        # No event is handled before this is done (the agents wait for the
        # broadcast topics), so every learner key is salted.
        if rt.learner_salt is None:
            rt.learner_salt = await resolve_learner_salt(settings)
        await run_broadcast_reader(rt)

    from streams.web import register_views

    register_views(app, rt, customers, inputs["purchases"])
    return app


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
    (the :class:`streams.faust_adapter.BatchSink` of the worker)."""

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


def _caught_up_test(app: faust.App, settings: Settings) -> Any:
    """Whether a topic-partition has nothing left to read, for the event-time order.

    Caught up: every offset below the broker's high watermark has reached the
    pipeline. A topic-partition that delivered nothing for IDLE_SECONDS while
    others did (not fetched yet, or paused) stops holding the others back
    (counted when it then brings older events: segmenter_events_handled_out_of_order).
    """

    def caught_up(topic: str, partition: int) -> bool:
        pipeline: Pipeline = app.pipeline  # type: ignore[attr-defined]
        tp = TP(settings.topic(topic), partition)
        try:
            highwater = app.consumer.highwater(tp)
        except Exception:
            highwater = None
        received = pipeline.received.get((topic, partition))
        if highwater is not None:
            if received is not None:
                position = received[0] + 1
            else:
                position = committed_offset(app.consumer, tp) or 0
            if position >= highwater:
                return True
        last = received[1] if received is not None else pipeline.receiving_since
        # (held back for the cluster model's pace is not silent: streams.model_pace)
        last = pipeline.fetch_hold.silent_since(tp, last)
        return last is not None and time.monotonic() - last > IDLE_SECONDS

    return caught_up


def _assigned_inputs(app: faust.App, settings: Settings) -> list[tuple[str, int]]:
    """The input topic-partitions (logical topic, partition) this worker reads now."""
    try:
        assignment = app.consumer.assignment()
    except Exception:
        return []
    names = {settings.topic(name): name for name in INPUT_TOPICS}
    return [(names[tp.topic], tp.partition) for tp in assignment if tp.topic in names]


def _owns_training(app: faust.App, settings: Settings) -> bool:
    """Whether this worker owns the training partition (and so runs the learners)."""
    try:
        return TP(settings.topic(TRAINING_TOPIC), 0) in app.consumer.assignment()
    except Exception:
        return False


def assigned_partitions(app: faust.App, topic: str) -> list[int]:
    """Partitions of ``topic`` currently assigned to this worker."""
    try:
        return sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == topic)
    except Exception:
        return []


def finish_sweep(rt: Runtime, partition: int, sweep: PartitionSweep) -> None:
    """Publish the statistics of a completed pass over a partition."""
    rt.kpis.end_pass(partition)
    previous = rt.partition_stats.get(partition, {})
    day_ago = previous.get("sizes_day_ago", {})
    if rt.clock.now_ms - previous.get("sizes_day_ago_ms", 0) >= MS_PER_DAY:
        day_ago = previous.get("sizes", {})
    rt.partition_stats[partition] = {
        "sizes": {t: dict(c) for t, c in sweep.sizes.items()},
        "sizes_day_ago": day_ago,
        "sizes_day_ago_ms": previous.get("sizes_day_ago_ms", 0)
        if day_ago is previous.get("sizes_day_ago")
        else rt.clock.now_ms,
        "churn_levels": dict(sweep.churn_levels),
        "customers": sweep.customers,
        "btyd": sweep.btyd.to_dict(),
        "spend": sweep.spend.to_dict(),  # the Gamma-Gamma fit of the CLV (docs/segments.md)
        # every customer of the partition is evaluated up to this day
        "reviewed_through": max(rt.reviewed_through(partition), day_of(sweep.clock_ms)),
        "cluster_changes": rt.cluster_change_stats(partition, day_of(sweep.clock_ms)),
    }
    totals: dict[str, Counter[str]] = {}
    levels: Counter[str] = Counter()
    customers = 0
    for stats in rt.partition_stats.values():
        for seg_type, counts in stats["sizes"].items():
            totals.setdefault(seg_type, Counter()).update(counts)
        levels.update(stats["churn_levels"])
        customers += stats["customers"]
    for seg_type, counts in totals.items():
        rt.metrics.set_segment_sizes(seg_type, counts)
    rt.metrics.set_churn_levels(levels)
    rt.metrics.set_table_keys("customers", customers)
    rt.metrics.set_cluster_change_rate(rt.cluster_change_rate(day_of(sweep.clock_ms)))


_app: faust.App | None = None


def __getattr__(name: str) -> Any:
    # ``app`` is built on first access, so importing this module reads no settings.
    if name == "app":
        global _app
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(name)
