"""Where the worker's per-event time goes, in-process: ``python -m streams.tools.hotpath``.

The bench's simulated history (``streams.tools.bench.history_records``: same seed,
broken and duplicated fractions) goes through the worker's own input handling
— :class:`streams.worker.app.IngestSink` over the real :class:`streams.worker.pipeline.Pipeline`,
a fetch of up to ``SEGMENTER_BATCH_SIZE`` records at a time, grouped by
topic-partition as the consumer hands them over — with a trained cluster
model and churn fit installed (a first pass trains them, as the learner would),
but without Kafka: outputs and changelog records go to stand-ins that
acknowledge at once, tables use the ``memory://`` store. So the figures are the
CPU cost of the per-event logic alone, the part a faster consumer cannot remove.

A third run of the same history has evaluation (rules, clusters, churn, KPIs at
an event) and the per-day catch-up replaced by ones that change nothing
(:mod:`streams.tools.floor_worker`, which ``python -m streams.tools.bench --floor``
runs end to end): the
*floor*, what every event costs before anything is evaluated (parse and
validation, privacy gate, event-time order, dedup, the feature update, state
bookkeeping, the batch's commit). Its outputs are meaningless; its CPU bounds
what any cheaper evaluation could gain. Within it, the *core* is the models'
own part: the same events through validation, dedup and the feature update
alone (``schemas.validation.validate``, ``models.dedup.check``,
``models.features.apply_event``), without the worker around them.

Each stage is timed by wrapping the function that implements it (a few hundred
ns of wrapper cost each); stages nest (``evaluate`` includes rules, cluster
assignment and churn), and the table says which stage contains which.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord
from faust.types import TP

from models.eventtime import MS_PER_DAY
from streams.tools.floor_worker import evaluate_nothing
from streams.worker.gc_tuning import settle_heap

__all__ = ["StageTimer", "core_cpu", "main", "measure", "pass_day"]

# stage -> the stage that contains it ("" = the whole batch)
STAGES = {
    "parse": "",  # validation + key check (Pipeline.parse)
    "order": "",  # event-time order: hold + release
    "apply": "",  # one event's processing (Pipeline.apply)
    "state read": "apply",  # table get + decode
    "handle": "apply",  # CustomerProcessor.handle
    "dedup": "handle",
    "catch-up": "handle",  # daily evaluations since the last one
    "features": "handle",
    "evaluate": "handle",  # rules + cluster + churn at the event
    "features view": "evaluate",  # result_features
    "rules": "evaluate",
    "cluster": "evaluate",
    "churn": "evaluate",
    "kpis": "handle",  # KpiTracker.applied + .evaluated (models.kpis; part in evaluate)
    "kpi sums": "apply",  # the partition's KPI sums (Pipeline.count_kpis)
    "state write": "apply",  # encode + put into the batch layer
    "emit": "apply",  # outputs into the outbox
    "memberships": "emit",  # segment-memberships records (streams.worker.audiences)
    "commit": "",  # group commit (stand-in broker: no network)
}


class StageTimer:
    """Accumulates CPU time per (stage, topic) of wrapped callables.

    >>> timer = StageTimer()
    >>> double = timer.wrap("rules", lambda x: 2 * x)
    >>> double(2), timer.calls[("rules", "-")]
    (4, 1)
    """

    def __init__(self) -> None:
        self.seconds: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.calls: Counter[tuple[str, str]] = Counter()
        self.topic = "-"

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.thread_time  # CPU time: the figures hold on a loaded machine

        def timed(*args: Any, **kwargs: Any) -> Any:
            key = (stage, self.topic)
            started = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[key] += clock() - started
                self.calls[key] += 1

        return timed

    def wrap_async(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.thread_time

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.seconds[(stage, "-")] += clock() - started
                self.calls[(stage, "-")] += 1

        return timed


class _Acked:
    """An output topic or changelog that acknowledges at once."""

    def __init__(self) -> None:
        self.sent = 0

    def _done(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        self.sent += 1
        return future

    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        return self._done()


def _worker(data_dir: Path, model: dict[str, Any] | None, **settings: Any) -> Any:
    from streams.settings import Settings
    from streams.worker.app import create_app

    app: Any = create_app(
        Settings(store="memory://", data_dir=data_dir, app_id="hotpath", **settings)
    )
    app.finalize()
    app.conf.store = "memory://"
    rt = app.segmenter
    rt.broadcast_caught_up.set()
    rt.learner_salt = b"hotpath"  # (a worker reads it from its topic before any event)
    pipeline = app.pipeline
    pipeline.caught_up = lambda topic, partition: True  # no backlog: nothing waits
    # No learner publishes here and no timer releases held events: the cluster
    # model's pace (streams.worker.model_pace) would hold the tail of the history for good.
    rt.model_pace.lead_ms = 0
    pipeline.merge.idle_seconds = 0.0  # nothing rerouted: no source partition to hear from
    acked = _Acked()
    pipeline.outputs = defaultdict(lambda: acked)

    async def send(topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        return None  # (no delivery future: acknowledged at once)

    pipeline.customers.send = send
    pipeline.suppressions.send = send
    if model is not None:
        rt.install_model(model)
    return app


def _fetches(records: list[tuple[str, bytes, bytes]], prefix: str, size: int, partitions: int):
    """The records as consumer fetches: up to ``size`` records, grouped by topic-partition."""
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    every = list(range(partitions))
    offsets: Counter[tuple[str, int]] = Counter()
    now = int(time.time() * 1000)
    for start in range(0, len(records), size):
        groups: dict[TP, list[Any]] = {}
        for topic, key, value in records[start : start + size]:
            partition = partitioner(key, every, every)
            offset = offsets[(topic, partition)]
            offsets[(topic, partition)] += 1
            tp = TP(prefix + topic, partition)
            groups.setdefault(tp, []).append(
                ConsumerRecord(
                    topic=tp.topic,
                    partition=partition,
                    offset=offset,
                    timestamp=now,
                    timestamp_type=0,
                    key=key,
                    value=value,
                    checksum=None,
                    serialized_key_size=len(key),
                    serialized_value_size=len(value),
                    headers=(),
                )
            )
        yield list(groups.items())


async def _run(app: Any, fetches: list[Any]) -> float:
    sink = app.batch_sink
    started = time.thread_time()
    for fetch in fetches:
        futures = await sink.handle(fetch)
        await asyncio.gather(*futures)
    await app.pipeline.drain()
    return time.thread_time() - started


async def pass_day(app: Any, day: int) -> int:
    """The pass of ``day`` over every partition, as the clock-ticks agent runs it;
    the customers it visited."""
    from streams.worker.sweep import PartitionSweep, partition_keys

    pipeline, rt = app.pipeline, app.segmenter
    visited = 0
    for partition in range(rt.settings.partitions):
        keys, _ = partition_keys(pipeline.customers.table, partition, None, 10**9)
        # (the memory:// store lists every partition's keys)
        ours = [k for k in keys if pipeline.router.partition_of(k) == partition]
        await pipeline.review_partition(ours, partition, PartitionSweep(clock_ms=day * MS_PER_DAY))
        # (what streams.worker.daily_sweep.finish_sweep records of a complete pass)
        rt.partition_stats.setdefault(partition, {})["reviewed_through"] = day
        visited += len(ours)
    await pipeline.drain()
    return visited


async def _daily_passes(app: Any, days: int) -> list[tuple[int, float]]:
    """The daily passes of the ``days`` days after the last event: (customers, CPU
    seconds) each."""
    first_day = app.segmenter.clock.now_ms // MS_PER_DAY + 1
    passes = []
    for day in range(first_day, first_day + days):
        started = time.thread_time()
        customers = await pass_day(app, day)
        passes.append((customers, time.thread_time() - started))
    return passes


def _train(records: list[tuple[str, bytes, bytes]], size: int, partitions: int) -> dict[str, Any]:
    """A model and churn fit from a first pass, as the learner would publish them."""
    from models.clustering import SegmentLearner
    from streams.worker.learner import LearnerHost

    with tempfile.TemporaryDirectory() as tmp:
        app = _worker(Path(tmp), None)
        fetches = list(_fetches(records, "", size, partitions))
        asyncio.run(_run(app, fetches))
        rt = app.segmenter
        host = LearnerHost(rt)
        # A short history: form clusters without the two weeks of warm-up the
        # worker waits for (the hot path's cost is what is measured here).
        host.learner = SegmentLearner(**{**host.learner_params(), "warmup_days": 0})
        # Every partition is complete through the end of the last event's day:
        # the learner closes those days (it refits once per day of stream time).
        day_end = (rt.clock.now_ms // MS_PER_DAY + 1) * MS_PER_DAY
        everything = {str(p): day_end for p in range(rt.settings.partitions)}
        host.learn(rt.training_buffer, through=everything)
        host.advance()
        return host.snapshot_message()


def core_cpu(records: list[tuple[str, bytes, bytes]], now_ms: int, window_ms: int) -> float:
    """CPU seconds of validation, dedup and the feature update of ``records`` alone
    (one state per key, no worker; ``window_ms`` the dedup window): the part of the
    floor the models do."""
    from models import dedup, features
    from models.customer import new_state
    from schemas.validation import validate

    states: dict[bytes, Any] = {}
    started = time.thread_time()
    for topic, key, value in records:
        try:
            event = validate(topic, value, now_ms=now_ms)
        except Exception:  # (dead-lettered by the worker)
            continue
        state = states.get(key)
        if state is None:
            state = states[key] = new_state(born=event["ts"])
        verdict = dedup.check(
            state["dedup"], topic, event["event_id"], event["ts"], window_ms=window_ms
        )
        if verdict == "new":
            features.apply_event(state["f"], topic, event)
    return time.thread_time() - started


def _with_topic(timer: StageTimer, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(topic, ...)`` with the timer attributing nested stages to ``topic``."""

    def call(topic: str, *args: Any) -> Any:
        timer.topic = topic
        try:
            return fn(topic, *args)
        finally:
            timer.topic = "-"

    return call


def _instrument(app: Any, timer: StageTimer) -> None:
    import models.dedup
    import models.processing
    import streams.worker.pipeline
    import streams.worker.working_set
    from models.ordering import EventTimeOrder

    pipeline, rt = app.pipeline, app.segmenter
    processor = rt.processor
    pipeline.apply = _with_topic(timer, timer.wrap("apply", pipeline.apply))
    pipeline.parse = _with_topic(timer, timer.wrap("parse", pipeline.parse))
    order = pipeline.order
    assert isinstance(order, EventTimeOrder)
    order.hold = timer.wrap("order", order.hold)  # type: ignore[method-assign]
    order.release = timer.wrap("order", order.release)  # type: ignore[method-assign]
    pipeline._commit_group = timer.wrap_async("commit", pipeline._commit_group)
    # (the working set decodes and encodes customer states: streams.worker.working_set)
    working_set = streams.worker.working_set
    working_set.decode_state = timer.wrap("state read", working_set.decode_state)
    pipeline.customers.get = timer.wrap("state read", pipeline.customers.get)
    working_set.encode = timer.wrap("state write", working_set.encode)
    pipeline.customers.put = timer.wrap("state write", pipeline.customers.put)
    pipeline.emit = timer.wrap("emit", pipeline.emit)
    processor.handle = timer.wrap("handle", processor.handle)
    models.dedup.check = timer.wrap("dedup", models.dedup.check)
    processor.catch_up = timer.wrap("catch-up", processor.catch_up)
    models.processing.features.apply_event = timer.wrap(
        "features", models.processing.features.apply_event
    )
    processor.evaluate = timer.wrap("evaluate", processor.evaluate)
    models.processing.result_features = timer.wrap(
        "features view", models.processing.result_features
    )
    processor.rules.changes = timer.wrap("rules", processor.rules.changes)
    if rt.assigner is not None:
        rt.assigner.assign = timer.wrap("cluster", rt.assigner.assign)
    processor.churn_step = timer.wrap("churn", processor.churn_step)
    if processor.tracker is not None:
        processor.tracker.applied = timer.wrap("kpis", processor.tracker.applied)
        processor.tracker.evaluated = timer.wrap("kpis", processor.tracker.evaluated)
    pipeline.count_kpis = timer.wrap("kpi sums", pipeline.count_kpis)
    streams.worker.pipeline.membership_records = timer.wrap(
        "memberships", streams.worker.pipeline.membership_records
    )


def measure(
    customers: int = 1_500,
    events: int = 40_000,
    *,
    seed: int = 42,
    batch_size: int = 1_000,
    partitions: int = 4,
    pass_days: int = 28,
    plain_only: bool = False,
) -> dict[str, Any]:
    """Run the history through the worker's input handling: plain (the per-event
    CPU), then the daily passes after it, then without evaluation (the floor), then
    with every stage timed. Returns the figures; ``plain_only``: the first run only
    (to compare builds or source trees whose objects cannot be patched, e.g. compiled)."""
    from streams.tools.bench import history_records

    end_ms = (int(time.time() * 1000) // MS_PER_DAY - 1) * MS_PER_DAY
    records = list(
        history_records(customers, events, seed=seed, end_ms=end_ms, bad=0.001, dup=0.005)
    )
    model = _train(records, batch_size, partitions)
    thresholds = gc.get_threshold()
    per_topic = Counter(topic for topic, _, _ in records)
    results: dict[str, Any] = {"events": len(records), "per_topic": dict(per_topic)}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            app = _worker(Path(tmp) / "plain", model, sweep_due_index=True)
            fetches = list(_fetches(records, "", batch_size, partitions))
            settle_heap()  # as `segmenter worker` does once the app is built
            results["plain_cpu_s"] = asyncio.run(_run(app, fetches))
            if plain_only:
                return results
            results["passes"] = asyncio.run(_daily_passes(app, pass_days))
            # The same passes without the due-day index (every customer at every pass).
            app = _worker(Path(tmp) / "every", model, sweep_due_index=False)
            asyncio.run(_run(app, list(_fetches(records, "", batch_size, partitions))))
            results["passes_every"] = asyncio.run(_daily_passes(app, pass_days))
            app = _worker(Path(tmp) / "floor", model)
            evaluate_nothing(app.segmenter.processor)
            fetches = list(_fetches(records, "", batch_size, partitions))
            settle_heap()
            results["floor_cpu_s"] = asyncio.run(_run(app, fetches))
            results["core_cpu_s"] = core_cpu(
                records, int(time.time() * 1000), app.segmenter.processor.dedup_window_ms
            )
            app = _worker(Path(tmp) / "timed", model)
            timer = StageTimer()
            _instrument(app, timer)
            fetches = list(_fetches(records, "", batch_size, partitions))
            settle_heap()
            results["timed_cpu_s"] = asyncio.run(_run(app, fetches))
    finally:  # (settle_heap froze the heap and raised the thresholds)
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    results["seconds"] = dict(timer.seconds)
    results["calls"] = dict(timer.calls)
    return results


def _passes_line(indexed: list[tuple[int, float]], every: list[tuple[int, float]]) -> str:
    """The daily passes' CPU per customer: the first one (everyone is evaluated and
    planned), the later ones with the due-day index, and without it."""

    def per_customer(passes: list[tuple[int, float]]) -> float:
        return sum(s for _, s in passes) / max(sum(n for n, _ in passes), 1) * 1e6

    return (
        f"daily passes of the {len(indexed)} days after the last event over "
        f"{indexed[0][0]:,} customers, µs per customer: first pass "
        f"**{per_customer(indexed[:1]):,.1f}**; the {len(indexed) - 1} later ones "
        f"**{per_customer(indexed[1:]):,.1f}** with the due-day index, "
        f"**{per_customer(every[1:]):,.1f}** without it "
        f"(`SEGMENTER_SWEEP_DUE_INDEX=false`, same run)"
    )


def _plain_line(results: dict[str, Any], more: str = "") -> str:
    events, seconds = results["events"], results["plain_cpu_s"]
    return (
        f"{events:,} events; worker input handling without Kafka: "
        f"**{seconds / events * 1e6:,.1f} µs per event** "
        f"({events / seconds:,.0f} events per CPU-second{more})"
    )


def _floor_line(results: dict[str, Any]) -> str:
    """The floor against the whole: what evaluation costs, what every event pays."""
    events = results["events"]
    plain = results["plain_cpu_s"] / events * 1e6
    floor = results["floor_cpu_s"] / events * 1e6
    core = results["core_cpu_s"] / events * 1e6
    evaluations = sum(n for (stage, _), n in results["calls"].items() if stage == "evaluate")
    return (
        f"without evaluation and catch-up (the floor every event pays, same history): "
        f"**{floor:,.1f} µs per event** ({floor / plain:.0%} of the whole); "
        f"evaluation and catch-up {plain - floor:,.1f} µs per event "
        f"({evaluations:,} evaluations, {evaluations / events:.2f} per event); of the floor, "
        f"validation, dedup and the feature update alone (the models' functions, no worker) "
        f"{core:,.1f} µs, the worker's bookkeeping around them {floor - core:,.1f} µs"
    )


def render(results: dict[str, Any]) -> str:
    """The figures as markdown: µs per event of the topic, per stage."""
    events = results["events"]
    per_topic = results["per_topic"]
    topics = sorted(per_topic, key=lambda t: -per_topic[t])
    seconds = results["seconds"]
    lines = [
        _plain_line(
            results, f"; with stage timers {results['timed_cpu_s'] / events * 1e6:,.1f} µs"
        ),
        "",
        _floor_line(results),
        "",
        _passes_line(results["passes"], results["passes_every"]),
        "",
        "| stage (inside) | all topics | "
        + " | ".join(f"{t} ({per_topic[t]:,})" for t in topics)
        + " |",
        "|---|---|" + "---|" * len(topics),
    ]
    for stage, parent in STAGES.items():
        total = sum(v for (s, _), v in seconds.items() if s == stage)
        cells = [f"{total / events * 1e6:,.1f}"]
        for topic in topics:
            value = seconds.get((stage, topic), 0.0)
            cells.append(f"{value / per_topic[topic] * 1e6:,.1f}" if value else "-")
        label = f"{stage} ({parent})" if parent else stage
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "µs per event of the column's topic (all topics: per event of the mix); "
        "a nested stage is part of the one in brackets; `order` and `commit` are per batch, "
        "spread over its events."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.tools.hotpath", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--customers", type=int, default=1_500)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument(
        "--plain",
        action="store_true",
        help="only the per-event CPU of the plain run (no passes, floor or stage timers)",
    )
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):
        results = measure(
            args.customers, args.events, batch_size=args.batch_size, plain_only=args.plain
        )
    print(_plain_line(results) if args.plain else render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
