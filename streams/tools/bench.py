"""End-to-end benchmark on the real broker: ``python -m streams.tools.bench`` (``make bench``).

Every run uses fresh topics (a unique topic prefix) and fresh consumer groups
on the broker at ``SEGMENTER_KAFKA_BOOTSTRAP``, and deletes them at the end.

Phases (see ``docs/benchmark.md`` for the method and how to read the numbers):

1. **preload** a seeded simulated history (:class:`streams.tools.simulator.Simulation`)
   onto the input topics, before anything is measured;
2. **baseline**: a plain aiokafka consume → ``orjson.loads`` → produce-one-record
   loop over the same topics (its own consumer group): the I/O limit;
3. **worker**: a real ``segmenter worker`` subprocess consuming the same topics,
   its rate read from its own Prometheus counters;
4. **latency**: a fresh worker fed at half the measured worker rate; event-to-emit
   p50/p99 from the worker's histogram and from matching output records to the
   input records that caused them;
5. **memory**: the worker's peak RSS (``VmHWM``), and RSS per thousand customers
   with a minimal synthetic stream for two population sizes.

The results table (markdown) is printed and written to
``.segmenter/bench-results.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from models.customer import CustomerState
from models.eventtime import MS_PER_DAY
from streams.ops.producing import RateLimiter, produce
from streams.settings import Settings
from streams.tools.worker_process import SEGMENTER, WorkerProcess
from streams.topics import INPUT_TOPICS, changelog_topic, create_topics

__all__ = [
    "BenchConfig",
    "events_handled",
    "histogram_quantile",
    "main",
    "parse_metrics",
    "render_table",
    "run",
    "scrape_metrics",
    "synthetic_records",
    "worker_command",
]

RESULTS = Path(".segmenter") / "bench-results.md"
BASELINE_OUTPUT = "bench-baseline-out"
#: Counters whose sum over topics is "events handled" (every input message ends in one).
HANDLED = (
    "segmenter_events_processed_total",
    "segmenter_events_duplicate_total",
    "segmenter_events_rejected_total",
)
LATENCY_HISTOGRAM = "segmenter_event_to_emit_latency_seconds"
LATENCY_OUTPUTS = ("segment-changes", "churn-risk")


# -- configuration ------------------------------------------------------------------
@dataclass
class BenchConfig:
    """Sizes of one benchmark run.

    >>> BenchConfig.for_args(quick=True).events < BenchConfig.for_args().events
    True
    >>> BenchConfig.for_args(events=5000).events
    5000
    """

    events: int = 40_000
    customers: int = 1_500
    latency_seconds: float = 30.0
    latency_rate: float | None = None  # default: half the measured worker rate
    warmup_seconds: float = 5.0
    memory_customers: tuple[int, ...] = (20_000, 100_000)
    idle_seconds: float = 10.0  # memory phase: how long the worker idles after the live events
    partitions: int = 4
    seed: int = 42
    bad_fraction: float = 0.001
    duplicate_fraction: float = 0.005
    quick: bool = False
    profile: Path | None = None
    floor: bool = False  # the worker evaluates nothing (streams.tools.floor_worker)
    keep: bool = False
    skip: frozenset[str] = frozenset()
    timeout: float = 900.0
    output: Path = RESULTS

    @classmethod
    def for_args(
        cls,
        *,
        quick: bool = False,
        events: int | None = None,
        customers: int | None = None,
        **overrides: Any,
    ) -> BenchConfig:
        """Defaults for ``make bench``, smaller ones for ``--quick``; explicit sizes win."""
        config = cls(**overrides)
        if quick:
            config.quick = True
            config.events = 10_000
            config.customers = 500
            config.latency_seconds = 8.0
            config.warmup_seconds = 4.0
            config.idle_seconds = 5.0
            config.memory_customers = (2_000, 10_000)
        if events is not None:
            config.events = events
        if customers is not None:
            config.customers = customers
        return config


# -- machine facts ------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU model from ``/proc/cpuinfo`` (or the platform's guess)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1/5/15-minute load averages as text."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def mem_total_mb() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# -- Prometheus text ----------------------------------------------------------------
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Samples of a Prometheus text exposition, keyed by (name, sorted labels).

    >>> s = parse_metrics('# HELP x y\\nx_total{topic="a"} 3.0\\nup 1\\n')
    >>> s[("x_total", (("topic", "a"),))], s[("up", ())]
    (3.0, 1.0)
    """
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        try:
            samples[(name, tuple(sorted(_LABEL.findall(labels))))] = float(value)
        except ValueError:
            continue
    return samples


def metric_sum(samples: Samples, name: str, **match: str) -> float:
    """Sum of every series of ``name`` whose labels include ``match``."""
    total = 0.0
    for (sample_name, labels), value in samples.items():
        if sample_name == name and all((k, v) in labels for k, v in match.items()):
            total += value
    return total


def scrape_metrics(worker: WorkerProcess, attempts: int = 20) -> Samples:
    """Scrape a worker's ``/metrics``; a refused or failed scrape is retried while it lives."""
    for attempt in range(attempts):
        worker.check_alive()
        try:
            status, body = worker.request("/metrics")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if attempt == attempts - 1:
                raise RuntimeError(f"/metrics failed: {exc}\n{worker.log_tail()}") from exc
            time.sleep(0.5)
            continue
        if status == 200:
            return parse_metrics(body.decode())
        time.sleep(0.5)
    raise RuntimeError(f"/metrics kept failing\n{worker.log_tail()}")


FLOOR_LABEL = ", evaluating nothing: `--floor`, the floor, not a product figure"


def worker_command(profile: Path | None = None, floor: bool = False) -> list[str]:
    """``segmenter worker``, under pyinstrument when ``profile`` names its output;
    ``floor``: the worker that evaluates nothing (:mod:`streams.tools.floor_worker`).

    >>> worker_command()[1:], worker_command(floor=True)[1:]
    (['worker'], ['-m', 'streams.tools.floor_worker', 'worker'])
    """
    worker = ["-m", "streams.tools.floor_worker", "worker"] if floor else [SEGMENTER, "worker"]
    if profile is None:
        return [sys.executable, *worker] if floor else worker
    pyinstrument = str(Path(sys.executable).with_name("pyinstrument"))
    session = str(profile.with_suffix(".pyisession"))
    # A 5 ms sampling interval keeps the session small enough to render quickly.
    return [pyinstrument, "-i", "0.005", "-r", "pyisession", "-o", session, *worker]


def events_handled(samples: Samples) -> int:
    """Input events the worker finished with: processed + duplicate + rejected.

    >>> events_handled(parse_metrics(
    ...     'segmenter_events_processed_total{topic="a"} 5\\n'
    ...     'segmenter_events_duplicate_total{topic="a"} 1\\n'
    ...     'segmenter_events_rejected_total{topic="b",reason="late"} 2\\n'))
    8
    """
    return int(sum(metric_sum(samples, name) for name in HANDLED))


def histogram_buckets(samples: Samples, name: str) -> list[tuple[float, float]]:
    """Cumulative ``(le, count)`` buckets of a histogram, summed over its other labels."""
    buckets: dict[float, float] = {}
    for (sample_name, labels), value in samples.items():
        if sample_name != name + "_bucket":
            continue
        le = dict(labels)["le"]
        bound = math.inf if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0.0) + value
    return sorted(buckets.items())


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket.

    >>> round(histogram_quantile(0.5, [(0.01, 0), (0.1, 10), (math.inf, 10)]), 6)
    0.055
    >>> histogram_quantile(0.99, [(1.0, 0), (math.inf, 4)])  # beyond the last bound
    1.0
    >>> histogram_quantile(0.5, [(math.inf, 0)]) is None
    True
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def bucket_delta(
    after: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Buckets observed between two scrapes."""
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of ``values`` (``None`` when empty).

    >>> quantile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5), quantile(list(range(100)), 0.99)
    (3.0, 98)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- inputs ---------------------------------------------------------------------------
Record = tuple[str, bytes, bytes]


def history_records(
    customers: int, events: int, *, seed: int, end_ms: int, bad: float, dup: float
) -> Iterator[Record]:
    """The first ``events`` records of a seeded simulated history ending before ``end_ms``."""
    from streams.tools.simulator import Simulation

    probe = Simulation(customers=customers, days=60, seed=seed)
    per_day = max(1.0, probe.count_hint() / 60)
    days = max(2, math.ceil(events * 1.25 / per_day) + 1)
    sim = Simulation(
        customers=customers,
        days=days,
        seed=seed,
        start_ms=(end_ms // MS_PER_DAY - days) * MS_PER_DAY,
        bad_fraction=bad,
        duplicate_fraction=dup,
    )
    return itertools.islice(sim.raw_records(), events)


def synthetic_records(
    count: int,
    *,
    per_customer: int = 1,
    start: int = 0,
    ts_ms: int = 0,
    tag: str = "m",
    id_tag: str = "",
) -> Iterator[Record]:
    """A minimal stream: one purchase per customer (and a profile when ``per_customer`` ≥ 2).

    >>> [(t, k) for t, k, _ in synthetic_records(2, per_customer=2, ts_ms=1)]
    [('profiles', b'm0000000'), ('purchases', b'm0000000'), ('profiles', b'm0000001'), ('purchases', b'm0000001')]
    >>> orjson.loads(next(synthetic_records(1, ts_ms=5))[2])["amount"]
    25.0
    """  # noqa: E501
    tag_bytes = id_tag.encode()
    for i in range(start, start + count):
        cid = f"{tag}{i:07d}"
        key = cid.encode()
        ts = ts_ms + i % 86_400_000
        if per_customer >= 2:
            yield (
                "profiles",
                key,
                b'{"event_id":"p-%s","customer_id":"%s","ts":%d,'
                b'"attributes":{"country":"DE","plan":"basic","age":40}}' % (key, key, ts),
            )
        yield (
            "purchases",
            key,
            b'{"event_id":"o%s-%s","customer_id":"%s","ts":%d,"order_id":"o%s-%s",'
            b'"amount":25.0,"items":1,"category":"books","channel":"web"}'
            % (tag_bytes, key, key, ts, tag_bytes, key),
        )


async def produce_all(
    bootstrap: str, prefix: str, records: Iterable[Record], *, progress: Callable[[int], None]
) -> int:
    """Send every record as fast as the producer allows; return how many."""
    return await produce(
        bootstrap,
        ((prefix + topic, key, value) for topic, key, value in records),
        progress=progress,
        linger_ms=20,
        max_batch_size=512 * 1024,
        window=20_000,
    )


# -- topics ----------------------------------------------------------------------------
def bench_settings(bootstrap: str, prefix: str, partitions: int, app_id: str = "") -> Settings:
    return Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        partitions=partitions,
        app_id=app_id or f"{prefix}app",
    )


async def create_bench_topics(settings: Settings, extra: Iterable[str] = ()) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    await create_topics(settings)
    names = [settings.topic(name) for name in extra]
    if not names:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(name=n, num_partitions=settings.partitions, replication_factor=1)
                for n in names
            ]
        )
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefixes: Iterable[str]) -> int:
    """Delete every topic whose name starts with one of ``prefixes``."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        prefixes = tuple(prefixes)
        doomed = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        if doomed:
            await admin.delete_topics(doomed)
        return len(doomed)
    finally:
        await admin.close()


# -- the baseline -----------------------------------------------------------------------
@dataclass
class Throughput:
    events: int
    seconds: float
    cpu_seconds: float | None = None  # CPU time of the measured process over the same span

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_rate(self) -> float | None:
        """Events per CPU-second: comparable across runs on a loaded machine."""
        return self.events / self.cpu_seconds if self.cpu_seconds else None


async def run_baseline(bootstrap: str, prefix: str, total: int, timeout: float) -> Throughput:
    """Consume the input topics, parse each value with orjson, produce one record per event.

    At-least-once like the worker: a batch's outputs are acknowledged before its
    offsets are committed.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        *(prefix + t for t in INPUT_TOPICS),
        bootstrap_servers=bootstrap,
        group_id=f"{prefix}baseline",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks="all"
    )
    await producer.start()
    await consumer.start()
    out = prefix + BASELINE_OUTPUT
    loads, dumps = orjson.loads, orjson.dumps
    seen = invalid = 0
    first = cpu_first = 0.0
    deadline = time.monotonic() + timeout
    try:
        while seen < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            if not batches:
                continue
            if not first:
                first = time.perf_counter()
                cpu_first = time.process_time()
            futures = []
            for records in batches.values():
                for record in records:
                    seen += 1
                    try:
                        event = loads(record.value)
                        value = dumps({"customer_id": event["customer_id"], "n": seen})
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        invalid += 1
                        value = b'{"invalid":true}'
                    futures.append(await producer.send(out, value=value, key=record.key))
            await asyncio.gather(*futures)
            await consumer.commit()
        elapsed = time.perf_counter() - first
        cpu = time.process_time() - cpu_first
    finally:
        await consumer.stop()
        await producer.stop()
    if seen < total:
        raise RuntimeError(f"baseline read {seen} of {total} events before the timeout")
    return Throughput(seen, elapsed, cpu)


# -- worker processes ---------------------------------------------------------------------
@dataclass
class WorkerRun:
    throughput: Throughput
    ready_seconds: float
    hwm_kb: int | None
    rss_kb: int | None
    idle_rss_kb: int | None
    batch_events: float | None = None  # mean messages per ingest batch
    commit_ms: float | None = None  # mean commit time of a batch


def batch_stats(samples: Samples) -> tuple[float | None, float | None]:
    """Mean ingest batch size and mean batch commit time (ms) from a worker's metrics."""
    batches = metric_sum(samples, "segmenter_batch_messages_count")
    if not batches:
        return None, None
    size = metric_sum(samples, "segmenter_batch_messages_sum") / batches
    commits = metric_sum(samples, "segmenter_commit_seconds_count")
    commit_sum = metric_sum(samples, "segmenter_commit_seconds_sum")
    commit = commit_sum / commits * 1000 if commits else None
    return size, commit


def drain(
    worker: WorkerProcess,
    total: int,
    timeout: float,
    *,
    progress: Callable[[int], None] | None = None,
) -> Throughput:
    """Poll the worker's counters until ``total`` events are handled.

    The rate is measured between the first scrape that saw work and the scrape
    that saw the last event, so start-up (group join, recovery) is not counted.
    Scrapes are rare (every 2 s) while much work remains and frequent near the
    end, so the measurement costs the worker little CPU and ends precisely.
    """
    deadline = time.monotonic() + timeout
    called = time.perf_counter()
    first: tuple[float, int, float | None] | None = None
    last_report = 0.0
    while time.monotonic() < deadline:
        worker.check_alive()
        now = time.perf_counter()
        done = events_handled(scrape_metrics(worker))
        cpu = proc_cpu_seconds(worker.pid)
        if done and first is None:
            first = (now, done, cpu)
        if progress and now - last_report > 10:
            progress(done)
            last_report = now
        if done >= total:
            assert first is not None
            if done == first[1]:
                # All handled before the first scrape saw progress: a lower bound
                # of the rate, timed from the call and at least one second.
                return Throughput(done, max(now - called, 1.0), None)
            cpu_used = cpu - first[2] if cpu is not None and first[2] is not None else None
            return Throughput(done - first[1], now - first[0], cpu_used)
        interval = 2.0
        if first is not None and done > first[1]:
            rate = (done - first[1]) / max(now - first[0], 1e-3)
            interval = min(2.0, max(0.05, (total - done) / rate / 4))
        time.sleep(interval)
    raise RuntimeError(f"worker handled fewer than {total} events within {timeout:.0f}s")


# -- latency --------------------------------------------------------------------------------
@dataclass
class LatencyResult:
    rate: float
    seconds: float
    sent: int
    matched: int
    outputs: int
    emit_ms: tuple[float | None, float | None]  # output record timestamp - input timestamp
    emit_max_ms: float | None
    emit_thirds_ms: tuple[float | None, ...]  # p50 of the first, middle and last third of the run
    consume_ms: tuple[float | None, float | None]  # receive time - input timestamp
    histogram_ms: tuple[float | None, float | None]  # the worker's own histogram
    histogram_count: int


async def measure_latency(
    worker: WorkerProcess,
    records: list[Record],
    rate: float,
    warmup: float,
) -> LatencyResult:
    """Produce ``records`` at ``rate`` and match outputs to the inputs that caused them.

    Each input is sent with an explicit Kafka timestamp (the send time). An
    output decided on an input event names it (``cause`` = ``event:<event_id>``),
    so every output record is matched exactly to its input; outputs of a day's
    evaluation or of a new model's placement (``day:…``, ``model:…``) match no
    input and are left out.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    prefix, bootstrap = worker.prefix, worker.bootstrap
    consumer = AIOKafkaConsumer(
        *(prefix + t for t in LATENCY_OUTPUTS),
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, acks=1)
    await consumer.start()
    await producer.start()
    sent_at: dict[tuple[str, str], int] = {}  # (customer, input event_id) -> send time
    received: list[tuple[dict[str, Any], int, float]] = []
    stop = asyncio.Event()

    async def collect() -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for batch in batches.values():
                for record in batch:
                    received.append((orjson.loads(record.value), record.timestamp, now))

    collector = asyncio.create_task(collect())
    histogram_before: list[tuple[float, float]] = []
    warm_until_ms = 0
    try:
        # The warm-up runs at a quarter of the rate: a cold worker (no model yet,
        # cold caches) must not start the measured part with a backlog.
        limiter = RateLimiter(rate / 4)
        started = time.time()
        warm_until_ms = int((started + warmup) * 1000)
        for topic, key, value in records:
            if not histogram_before and time.time() >= started + warmup:
                histogram_before = histogram_buckets(
                    await asyncio.to_thread(scrape_metrics, worker), LATENCY_HISTOGRAM
                )
                limiter = RateLimiter(rate)
            now_ms = int(time.time() * 1000)
            event = orjson.loads(value)
            # Live traffic: event time is the send time, so the stream clock moves
            # with the wall clock as in production (nothing else is changed).
            event["ts"] = now_ms
            value = orjson.dumps(event)
            sent_at[(event["customer_id"], event["event_id"])] = now_ms
            await producer.send(prefix + topic, value=value, key=key, timestamp_ms=now_ms)
            await limiter.tick()
        await producer.flush()
        seconds = time.time() - started
        # Let the worker finish the tail, then read its histogram.
        target = len(records)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            samples = await asyncio.to_thread(scrape_metrics, worker)
            if events_handled(samples) >= target:
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)
        histogram_after = histogram_buckets(
            await asyncio.to_thread(scrape_metrics, worker), LATENCY_HISTOGRAM
        )
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await collector
        await consumer.stop()
        await producer.stop()

    emit: list[float] = []
    consume: list[float] = []
    timeline: list[tuple[int, float]] = []
    for output, out_ts, seen in received:
        cause = str(output.get("cause", ""))
        if not cause.startswith("event:"):
            continue
        in_ts = sent_at.get((str(output.get("customer_id")), cause[len("event:") :]))
        if in_ts is not None and in_ts >= warm_until_ms:
            emit.append(out_ts - in_ts)
            timeline.append((in_ts, out_ts - in_ts))
            consume.append(seen * 1000 - in_ts)
    delta = bucket_delta(histogram_after, histogram_before or [])
    return LatencyResult(
        rate=rate,
        seconds=seconds,
        sent=len(records),
        matched=len(emit),
        outputs=len(received),
        emit_ms=(quantile(emit, 0.5), quantile(emit, 0.99)),
        emit_max_ms=max(emit) if emit else None,
        emit_thirds_ms=_thirds(timeline),
        consume_ms=(quantile(consume, 0.5), quantile(consume, 0.99)),
        histogram_ms=tuple(  # type: ignore[arg-type]
            None if (v := histogram_quantile(q, delta)) is None else v * 1000 for q in (0.5, 0.99)
        ),
        histogram_count=int(delta[-1][1]) if delta else 0,
    )


def _thirds(timeline: list[tuple[int, float]]) -> tuple[float | None, ...]:
    """Median latency of the first, middle and last third of the run (by send time).

    A backlog that grows during the run (the rate is above what the worker
    sustains) shows as rising thirds.

    >>> _thirds([(t, float(t)) for t in range(9)])
    (1.0, 4.0, 7.0)
    """
    if not timeline:
        return (None, None, None)
    start, end = min(t for t, _ in timeline), max(t for t, _ in timeline)
    span = max(1, end - start + 1)
    parts: list[list[float]] = [[], [], []]
    for sent, latency in timeline:
        parts[min(2, (sent - start) * 3 // span)].append(latency)
    return tuple(quantile(part, 0.5) for part in parts)


# -- the run ----------------------------------------------------------------------------------
@dataclass
class Results:
    config: BenchConfig
    command: str
    facts: dict[str, str] = field(default_factory=dict)
    preload: Throughput | None = None
    baseline: Throughput | None = None
    worker: WorkerRun | None = None
    latency: LatencyResult | None = None
    memory: list[MemoryPoint] = field(default_factory=list)
    empty_rss_kb: int | None = None  # a ready worker without state
    notes: list[str] = field(default_factory=list)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Run:
    """One benchmark run: its prefixes, workers and temporary directory."""

    def __init__(self, config: BenchConfig, bootstrap: str) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.tag = f"bench{uuid.uuid4().hex[:6]}"
        self.root = Path(tempfile.mkdtemp(prefix=f"segmenter-{self.tag}-"))
        self.prefixes: list[str] = []
        self.workers: list[WorkerProcess] = []

    def prefix(self, phase: str) -> str:
        prefix = f"{self.tag}-{phase}-"
        if prefix in self.prefixes:  # a retried phase gets fresh topics
            prefix = f"{self.tag}-{phase}{len(self.prefixes)}-"
        self.prefixes.append(prefix)
        return prefix

    async def topics(self, prefix: str, extra: Iterable[str] = ()) -> Settings:
        settings = bench_settings(self.bootstrap, prefix, self.config.partitions)
        await create_bench_topics(settings, extra)
        return settings

    def worker(
        self, prefix: str, name: str, profile: Path | None = None, app_id: str = ""
    ) -> WorkerProcess:
        """Start a worker on ``prefix`` (consumer group ``app_id``, default ``<prefix>app``)."""
        worker = WorkerProcess.configured(
            bootstrap=self.bootstrap,
            prefix=prefix,
            app_id=app_id or f"{prefix}app",
            partitions=self.config.partitions,
            data_dir=self.root / f"{name}-{len(self.workers)}",
            log_level=os.environ.get("SEGMENTER_BENCH_LOG_LEVEL", "info"),
        )
        worker.command = worker_command(profile, self.config.floor)
        self.workers.append(worker)
        return worker.start()

    def cleanup(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.config.keep:
            say(f"kept {self.root} and topics {self.prefixes}")
            return
        shutil.rmtree(self.root, ignore_errors=True)
        # Faust's changelog topics are named <app_id>-<prefix>..., and app_id starts
        # with the prefix too, so the prefixes cover every topic of the run.
        with contextlib.suppress(Exception):
            n = asyncio.run(delete_topics(self.bootstrap, self.prefixes))
            say(f"deleted {n} bench topics")


def _progress(label: str, total: int) -> Callable[[int], None]:
    def report(done: int) -> None:
        say(f"{label}: {done:,}/{total:,}")

    return report


def run(config: BenchConfig, command: str = "") -> Results:
    """Run every phase not in ``config.skip``; return the results."""
    settings = Settings()
    results = Results(config=config, command=command or "python -m streams.tools.bench")
    results.facts = {
        "host": platform.node(),
        "cpus": str(os.cpu_count()),
        "cpu": cpu_model(),
        "memory": f"{mem_total_mb():,} MB",
        "python": platform.python_version(),
        "broker": settings.kafka_bootstrap,
        "load_start": load_average(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    bench = Run(config, settings.kafka_bootstrap)
    try:
        _run_phases(bench, results)
    finally:
        results.facts["load_end"] = load_average()
        bench.cleanup()
    return results


def _run_phases(bench: Run, results: Results) -> None:
    config = bench.config
    end_ms = (int(time.time() * 1000) // MS_PER_DAY - 1) * MS_PER_DAY
    prefix = bench.prefix("main")
    total = _preload_phase(bench, results, prefix, end_ms)
    if "baseline" not in config.skip:
        _phase(results, "baseline", lambda: _baseline_phase(bench, results, prefix, total))
    if "worker" not in config.skip:
        _phase(results, "worker", lambda: _worker_phase(bench, results, prefix, total))
    if "latency" not in config.skip:
        _phase(results, "latency", lambda: _latency_phase(bench, results, end_ms))
    if "memory" not in config.skip:
        _phase(results, "memory", lambda: _memory_phase(bench, results, end_ms))


def _phase(results: Results, name: str, body: Callable[[], None], attempts: int = 2) -> None:
    """Run one phase; retry it once, then a failure becomes a note in the table.

    On a shared machine a worker can die of causes outside the bench (it has
    been seen to receive SIGTERM from elsewhere); the retry and the note keep
    the rest of the run and say what happened.
    """
    for attempt in range(1, attempts + 1):
        try:
            body()
            return
        except Exception as exc:
            say(f"{name} phase failed (attempt {attempt}): {exc}")
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            results.notes.append(f"{name} phase attempt {attempt} failed: {first_line}")


def _preload_phase(bench: Run, results: Results, prefix: str, end_ms: int) -> int:
    config = bench.config
    asyncio.run(bench.topics(prefix, extra=[BASELINE_OUTPUT]))
    say(f"preloading {config.events:,} events of {config.customers:,} customers to {prefix}*")
    started = time.perf_counter()
    records = history_records(
        config.customers,
        config.events,
        seed=config.seed,
        end_ms=end_ms,
        bad=config.bad_fraction,
        dup=config.duplicate_fraction,
    )
    total = asyncio.run(
        produce_all(bench.bootstrap, prefix, records, progress=_progress("preload", config.events))
    )
    results.preload = Throughput(total, time.perf_counter() - started)
    if total < config.events:
        results.notes.append(f"the simulated history held only {total:,} events")
    return total


def _baseline_phase(bench: Run, results: Results, prefix: str, total: int) -> None:
    say("baseline: aiokafka consume → orjson → produce")
    results.baseline = asyncio.run(
        run_baseline(bench.bootstrap, prefix, total, bench.config.timeout)
    )
    say(f"baseline: {results.baseline.rate:,.0f} events/s")


def _worker_phase(bench: Run, results: Results, prefix: str, total: int) -> None:
    config = bench.config
    say("worker: starting a segmenter worker on the preloaded topics")
    # A fresh consumer group per attempt: a retry starts from the beginning again.
    worker = bench.worker(prefix, "main", config.profile, app_id=f"{prefix}app{len(bench.workers)}")
    ready = worker.wait_ready()
    idle = worker.rss_kb()
    throughput = drain(worker, total, config.timeout, progress=_progress("worker", total))
    size, commit = batch_stats(scrape_metrics(worker))
    results.worker = WorkerRun(
        throughput, ready, worker.hwm_kb(), worker.rss_kb(), idle, size, commit
    )
    say(f"worker: {throughput.rate:,.0f} events/s")
    worker.stop()
    if config.profile is not None:
        render_profile(config.profile)


def _latency_phase(bench: Run, results: Results, end_ms: int) -> None:
    config = bench.config
    max_rate = results.worker.throughput.rate if results.worker else 200.0
    # Bounded, so a mis-measured maximum cannot make the phase generate events
    # faster than any worker here handles (they are held in memory).
    rate = config.latency_rate or min(5_000.0, max(20.0, max_rate / 2))
    count = int(rate * (config.latency_seconds + config.warmup_seconds / 4))
    prefix = bench.prefix("lat")
    asyncio.run(bench.topics(prefix))
    fresh = list(
        history_records(
            max(200, config.customers // 2),
            count,
            seed=config.seed + 1,
            end_ms=end_ms,
            bad=0,
            dup=0,
        )
    )
    worker = bench.worker(prefix, "latency")
    worker.wait_ready()
    time.sleep(2.0)
    results.empty_rss_kb = worker.rss_kb()
    say(f"latency: {len(fresh):,} fresh events at {rate:,.0f}/s")
    results.latency = asyncio.run(measure_latency(worker, fresh, rate, config.warmup_seconds))
    lat = results.latency
    say(f"latency: emit p50/p99 {lat.emit_ms} ms; histogram {lat.histogram_ms} ms")
    worker.stop()


def _memory_phase(bench: Run, results: Results, end_ms: int) -> None:
    if results.empty_rss_kb is None:
        prefix = bench.prefix("empty")
        asyncio.run(bench.topics(prefix))
        worker = bench.worker(prefix, "empty")
        worker.wait_ready()
        time.sleep(2.0)
        results.empty_rss_kb = worker.rss_kb()
        worker.stop()
    done = {point.customers for point in results.memory}
    for customers in bench.config.memory_customers:
        if customers in done:  # measured before a retry
            continue
        point = memory_point(bench, customers, end_ms, results.empty_rss_kb)
        results.memory.append(point)
        say(
            f"memory: {customers:,} customers, RSS {_mb(point.rss_kb)}, "
            f"{point.per_thousand_kb} kB per 1000"
        )


TEMPLATE_ID = "m0000000"


def customer_state_template(ts_ms: int) -> bytes:
    """A real stored customer: the worker's own processor applied to a profile and a purchase."""
    from schemas import validate
    from streams.worker.app import build_runtime

    rt = build_runtime(Settings())
    state: CustomerState | None = None
    for topic, _key, value in synthetic_records(1, per_customer=2, ts_ms=ts_ms):
        event = validate(topic, value, now_ms=ts_ms + MS_PER_DAY)
        state = rt.processor.handle(TEMPLATE_ID, state, topic, event, None, None).state
    return orjson.dumps(state)


def changelog_records(
    count: int, template: bytes, partitions: int
) -> Iterator[tuple[int, bytes, bytes]]:
    """``(partition, key, value)`` of the customers table's changelog for ``count`` customers.

    Keys are JSON strings (Faust's table key codec); each customer goes to the
    partition its input events hash to (the default murmur2 partitioner), as
    the worker itself would have written it.

    >>> [(p, k) for p, k, _ in changelog_records(2, b'{"x":"m0000000"}', 4)][0][1]
    b'"m0000000"'
    """
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    every = list(range(partitions))
    old = TEMPLATE_ID.encode()
    for i in range(count):
        cid = f"m{i:07d}".encode()
        yield partitioner(cid, every, every), b'"%s"' % cid, template.replace(old, cid)


async def produce_changelog(
    bootstrap: str, topic: str, records: Iterable[tuple[int, bytes, bytes]], total: int
) -> int:
    def progress(sent: int) -> None:
        if sent % 200_000 == 0:
            say(f"changelog: {sent:,}/{total:,}")

    # (acks=1: a preload of the benchmark's own, written as fast as the broker takes it)
    return await produce(
        bootstrap,
        ((topic, key, value, partition) for partition, key, value in records),
        progress=progress,
        acks=1,
        linger_ms=50,
        max_batch_size=1024 * 1024,
        window=50_000,
    )


@dataclass
class MemoryPoint:
    customers: int
    restore_seconds: float
    ready_rss_kb: int | None
    rss_kb: int | None
    hwm_kb: int | None
    live: Throughput
    idle_cpu: float | None  # fraction of one core while idle, after the live events
    empty_rss_kb: int | None = None

    @property
    def per_thousand_kb(self) -> float | None:
        if self.rss_kb is None or self.empty_rss_kb is None or not self.customers:
            return None
        return (self.rss_kb - self.empty_rss_kb) / self.customers * 1000


def memory_point(bench: Run, customers: int, end_ms: int, empty_rss_kb: int | None) -> MemoryPoint:
    """A worker's RSS once it holds state for ``customers``.

    Processing millions of events through one worker would take far longer than
    a benchmark may, so the state is written the way a worker restarting on a
    new machine gets it: the customers table's changelog is filled with a real
    customer state (a profile and a purchase, computed by the worker's own
    processor) for each of ``customers`` ids, and the worker restores it into
    RocksDB before it is ready. Then live events for 1 % of the customers (at
    most 2,000) go through the full path, and the worker idles for ``idle_seconds``.
    """
    prefix = bench.prefix(f"mem{customers}")
    settings = asyncio.run(bench.topics(prefix))
    template = customer_state_template(end_ms - MS_PER_DAY)
    say(f"memory: {customers:,} customer states ({len(template):,} bytes each) to the changelog")
    asyncio.run(
        produce_changelog(
            bench.bootstrap,
            changelog_topic(settings, "customers"),
            changelog_records(customers, template, bench.config.partitions),
            customers,
        )
    )
    worker = bench.worker(prefix, f"mem{customers}")
    restore = worker.wait_ready(timeout=bench.config.timeout)
    ready_rss = worker.rss_kb()
    say(f"memory: restored {customers:,} customers in {restore:.0f} s; RSS {_mb(ready_rss)}")
    live = min(2_000, max(100, customers // 100))
    now_ms = int(time.time() * 1000)
    asyncio.run(
        produce_all(
            bench.bootstrap,
            prefix,
            synthetic_records(live, ts_ms=now_ms - 60_000, start=1, id_tag="live"),
            progress=lambda _n: None,
        )
    )
    throughput = drain(worker, live, bench.config.timeout)
    idle_seconds = bench.config.idle_seconds
    cpu_before = proc_cpu_seconds(worker.pid)
    time.sleep(idle_seconds)
    cpu_after = proc_cpu_seconds(worker.pid)
    idle = None
    if cpu_before is not None and cpu_after is not None:
        idle = (cpu_after - cpu_before) / idle_seconds
    point = MemoryPoint(
        customers, restore, ready_rss, worker.rss_kb(), worker.hwm_kb(), throughput, idle,
        empty_rss_kb,
    )  # fmt: skip
    worker.stop()
    return point


def render_profile(profile: Path) -> None:
    """Render the worker's pyinstrument session as text and HTML next to ``profile``."""
    session = profile.with_suffix(".pyisession")
    pyinstrument = str(Path(sys.executable).with_name("pyinstrument"))
    for renderer, suffix in (("text", ".txt"), ("html", ".html")):
        subprocess.run(
            [
                pyinstrument,
                "--load",
                str(session),
                "-r",
                renderer,
                "-o",
                str(profile.with_suffix(suffix)),
            ],
            check=False,
        )
    say(f"profile: {profile.with_suffix('.txt')} and {profile.with_suffix('.html')}")


# -- the table ----------------------------------------------------------------------------------
def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} ms"


def _per_cpu(t: Throughput) -> str:
    rate = t.cpu_rate
    return "CPU n/a" if rate is None else f"{rate:,.0f} events per CPU-second"


def _mb(kb: int | float | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:,.0f} MB"


def render_table(results: Results) -> str:
    """The results as markdown."""
    c, f = results.config, results.facts
    lines = [
        "# Segmenter benchmark" + (" (--quick: small sizes)" if c.quick else ""),
        "",
        "| | |",
        "|---|---|",
        f"| command | `{results.command}` |",
        f"| started | {f.get('started', '')} |",
        f"| machine | {f.get('cpus')} CPUs, {f.get('cpu')}, {f.get('memory')} RAM |",
        f"| python / broker | {f.get('python')} / {f.get('broker')} (local single-node KRaft) |",
        f"| load average (1/5/15 min) at start | {f.get('load_start')} |",
        f"| load average (1/5/15 min) at end | {f.get('load_end')} |",
        f"| input | {c.events:,} simulated events of {c.customers:,} customers, "
        f"{c.partitions} partitions, {c.bad_fraction:.1%} broken, "
        f"{c.duplicate_fraction:.1%} duplicated |",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    if results.preload:
        lines.append(
            f"| preload (producer, not measured below) | {results.preload.rate:,.0f} events/s |"
        )
    if results.baseline:
        b = results.baseline
        lines.append(
            f"| baseline: aiokafka + orjson, 1 output per event | **{b.rate:,.0f} events/s** "
            f"({b.events:,} in {b.seconds:.1f} s; {_per_cpu(b)}) |"
        )
    if results.worker:
        w = results.worker
        lines.append(
            f"| segmenter worker (1 process{FLOOR_LABEL if results.config.floor else ''}) | "
            f"**{w.throughput.rate:,.0f} events/s** "
            f"({w.throughput.events:,} in {w.throughput.seconds:.1f} s; "
            f"{_per_cpu(w.throughput)}; ready after {w.ready_seconds:.1f} s) |"
        )
        if results.baseline and results.baseline.rate:
            ratio = f"**{w.throughput.rate / results.baseline.rate:.1%}** (wall clock)"
            b_cpu, w_cpu = results.baseline.cpu_rate, w.throughput.cpu_rate
            if b_cpu and w_cpu:
                ratio += f"; {w_cpu / b_cpu:.1%} per CPU-second"
            lines.append(f"| ratio worker / baseline | {ratio} |")
        if w.batch_events is not None:
            lines.append(
                f"| worker batches (mean) | {w.batch_events:,.0f} messages, committed in "
                f"{_ms(w.commit_ms)} (outputs acknowledged, then state written) |"
            )
        lines.append(
            f"| worker RSS: idle → after run, peak (VmHWM) | {_mb(w.idle_rss_kb)} → "
            f"{_mb(w.rss_kb)}, peak **{_mb(w.hwm_kb)}** |"
        )
    if results.latency:
        lat = results.latency
        lines += [
            f"| latency run | {lat.sent:,} fresh events at {lat.rate:,.0f}/s "
            f"({'fixed' if c.latency_rate else '½ worker max'}) for "
            f"{lat.seconds:.0f} s, first {c.warmup_seconds:g} s excluded; {lat.outputs:,} outputs, "
            f"{lat.matched:,} matched to their input |",
            f"| event → emit p50 / p99 (output record ts minus input record ts) | "
            f"**{_ms(lat.emit_ms[0])} / {_ms(lat.emit_ms[1])}** (max {_ms(lat.emit_max_ms)}) |",
            "| event → emit p50 in the first / middle / last third of the run | "
            + " / ".join(_ms(v) for v in lat.emit_thirds_ms)
            + " |",
            f"| event → downstream consumer p50 / p99 | {_ms(lat.consume_ms[0])} / "
            f"{_ms(lat.consume_ms[1])} |",
            f"| worker histogram p50 / p99 ({lat.histogram_count:,} observations, bucket-"
            f"interpolated) | {_ms(lat.histogram_ms[0])} / {_ms(lat.histogram_ms[1])} |",
        ]
    if results.memory:
        lines.append(
            f"| memory: a ready worker without state (RSS) | {_mb(results.empty_rss_kb)} |"
        )
    for point in results.memory:
        per = point.per_thousand_kb
        idle = "n/a" if point.idle_cpu is None else f"{point.idle_cpu:.0%} of a core"
        lines.append(
            f"| memory: {point.customers:,} customers restored from the changelog in "
            f"{point.restore_seconds:.0f} s, then {point.live.events:,} live events "
            f"({point.live.rate:,.0f}/s) | RSS {_mb(point.ready_rss_kb)} when ready → "
            f"{_mb(point.rss_kb)}, peak {_mb(point.hwm_kb)}; "
            f"**{'n/a' if per is None else f'{per:,.1f} kB'} per 1000 customers**; "
            f"CPU while idle {idle} |"
        )
    if len(results.memory) >= 2:
        small, big = results.memory[0], results.memory[-1]
        if small.rss_kb and big.rss_kb and big.customers > small.customers:
            slope = (big.rss_kb - small.rss_kb) / (big.customers - small.customers) * 1000
            lines.append(
                f"| memory: marginal RSS {small.customers:,} → {big.customers:,} customers | "
                f"{slope:,.1f} kB per 1000 customers |"
            )
    if results.notes:
        lines += ["", *[f"- {note}" for note in results.notes]]
    return "\n".join(lines) + "\n"


# -- command line ---------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="python -m streams.tools.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, help="events in the preloaded history")
    parser.add_argument("--customers", type=int, help="customers in the preloaded history")
    parser.add_argument("--quick", action="store_true", help="small sizes (about 2 minutes)")
    parser.add_argument(
        "--latency-seconds", type=float, help="seconds of fixed-rate load in the latency phase"
    )
    parser.add_argument(
        "--latency-rate", type=float, help="events/s of the latency phase (default: ½ worker max)"
    )
    parser.add_argument(
        "--memory-customers",
        type=lambda s: tuple(int(x) for x in s.split(",") if x),
        help="population sizes of the memory phase, comma-separated",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated phases to skip: baseline, worker, latency, memory",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the throughput worker under pyinstrument; write PROFILE.txt/.html "
        "(the worker's rate is then not comparable)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="workers that evaluate nothing (streams.tools.floor_worker): what a cheaper "
        "evaluation could at best reach; not a product figure",
    )
    parser.add_argument("--keep", action="store_true", help="keep the topics and data dirs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the table")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {
        "skip": frozenset(s.strip() for s in args.skip.split(",") if s.strip()),
        "profile": args.profile,
        "floor": args.floor,
        "keep": args.keep,
    }
    config = BenchConfig.for_args(
        quick=args.quick, events=args.events, customers=args.customers, **overrides
    )
    if args.latency_seconds is not None:
        config.latency_seconds = args.latency_seconds
    config.latency_rate = args.latency_rate
    if args.memory_customers is not None:
        config.memory_customers = args.memory_customers
    config.output = args.output
    return config


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    command = shlex.join(
        ["python", "-m", "streams.tools.bench", *(sys.argv[1:] if argv is None else argv)]
    )
    results = run(config, command)
    table = render_table(results)
    print(table)
    output = config.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table)
    say(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
