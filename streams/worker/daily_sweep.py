"""The daily pass over a partition's customers, and the clock timer that starts it.

Every second (or when woken: :mod:`streams.worker.wakeup`) the clock timer
publishes each assigned partition's stream clock, segment statistics and KPI
sums on the internal clock topic, and starts a pass
(a record on the partition's ``clock-ticks`` partition) when the stream clock
enters a new day, a new cluster model arrives or ``SWEEP_EVERY_SECONDS`` have
passed. The clock-ticks agent then walks the partition's stored customers
``SWEEP_CHUNK`` at a time, brings each up to the pass's day
(:meth:`streams.worker.pipeline.Pipeline.review_partition`: silent customers move on
without an event) and, at the end of the pass, publishes the partition's
statistics (:func:`finish_sweep`). Wired by :func:`streams.worker.app.create_app`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson

from models.eventtime import MS_PER_DAY, day_of
from streams.codec import encode
from streams.worker.assignment import assigned_partitions
from streams.worker.pipeline import Pipeline
from streams.worker.runtime import Runtime
from streams.worker.sweep import PartitionSweep, partition_keys
from streams.worker.wakeup import install_loop

__all__ = [
    "CLOCK_INTERVAL_SECONDS",
    "GO_ON",
    "START",
    "START_PATIENCE_SECONDS",
    "SWEEP_CHUNK",
    "SWEEP_EVERY_SECONDS",
    "Passes",
    "finish_sweep",
    "install_daily_sweep",
]

log = logging.getLogger(__name__)

SWEEP_CHUNK = 2000
START = b'{"start":true}'  # a tick that starts a pass (module docs)
GO_ON = b"{}"  # a tick that moves the pass under way one chunk on
START_PATIENCE_SECONDS = 60.0
CLOCK_INTERVAL_SECONDS = 1.0
SWEEP_EVERY_SECONDS = 600.0  # also refresh segment statistics this often (wall clock)


def install_daily_sweep(
    app: faust.App, rt: Runtime, pipeline: Pipeline, customers: Any, ticks: Any, clock_topic: Any
) -> Passes:
    """Register the clock-ticks agent and the clock timer on ``app``; their passes."""
    passes = Passes()
    _install_pass_agent(app, rt, pipeline, customers, ticks, passes)
    _install_clock_timer(app, rt, pipeline, ticks, clock_topic, passes)

    @app.on_partitions_assigned.connect
    def forget_due_days(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Another worker may have changed these customers while they were not
        # ours: every pass after a rebalance evaluates everyone once more.
        rt.due_index.clear()

    return passes


@dataclass
class Passes:
    """The passes under way, and the partitions whose start tick is on its way.

    A tick either starts a pass (:data:`START`) or moves the partition's pass
    under way one chunk on; a tick of the second kind that arrives after its
    pass ended is ignored (otherwise every tick sent while a pass ran would
    start another full pass once it ended).
    """

    running: dict[int, PartitionSweep] = field(default_factory=dict)
    # partition -> when (monotonic s) its start tick was sent
    starting: dict[int, float] = field(default_factory=dict)
    # partition -> (stream day, wall time, model version) when its last pass was asked
    # for (the day: the earlier of the day asked for and the day it ran at, began);
    # a pass that fails is forgotten here, so the clock loop starts it again
    started: dict[int, tuple[int, float, str | None]] = field(default_factory=dict)

    def busy(self, partition: int, now: float) -> bool:
        """Whether a pass of ``partition`` runs or is about to (a start tick not
        taken within ``START_PATIENCE_SECONDS`` is sent again: the partition
        may have moved away and back meanwhile).

        >>> passes = Passes(starting={1: 100.0})
        >>> passes.busy(1, now=101.0), passes.busy(1, now=200.0), passes.busy(2, now=101.0)
        (True, False, False)
        """
        sent = self.starting.get(partition)
        return partition in self.running or (
            sent is not None and now - sent < START_PATIENCE_SECONDS
        )

    def due(self, partition: int, day: int, model: str | None, now: float) -> bool:
        """Whether a pass of ``partition`` at stream day ``day`` should start: the
        day is later than the last pass's, the cluster model is another, or
        ``SWEEP_EVERY_SECONDS`` have passed (``now``: monotonic s).

        >>> passes = Passes(started={0: (12, 100.0, "km-1")})
        >>> passes.due(0, 12, "km-1", now=101.0), passes.due(0, 13, "km-1", now=101.0)
        (False, True)
        >>> passes.due(0, 12, "km-2", now=101.0), passes.due(1, 12, "km-1", now=101.0)
        (True, True)
        """
        last_day, started, seen_model = self.started.get(partition, (-1, 0.0, None))
        return day > last_day or model != seen_model or now - started > SWEEP_EVERY_SECONDS

    def began(self, partition: int, day: int) -> None:
        """The pass of ``partition`` taken up by the agent runs at ``day``.

        The clock loop asked for the day it saw; the pass takes the partition's
        clock again when it starts, which may be a day earlier (an event read
        meanwhile, a rerouted one say, holds the clock back). Recording the
        day asked for would make the loop wait for the next one, and the
        learner, which closes a day only once every partition's pass reached
        it, with it: the workers stalled until the model pace gave up
        (``streams.worker.model_pace``, 60 s). A pass that runs at a later
        day than asked (the clock moved on meanwhile) leaves the record as
        it is: the loop still starts a pass when it sees that day, so every
        stream day has a pass that starts in it (its statistics taken after
        the day's first events; cheap with the due-day index).

        >>> passes = Passes(started={0: (12, 100.0, "km-1")})
        >>> passes.began(0, 11)
        >>> passes.due(0, 12, "km-1", now=101.0)  # the day asked for is still to come
        True
        >>> passes = Passes(started={0: (12, 100.0, "km-1")})
        >>> passes.began(0, 13)
        >>> passes.due(0, 13, "km-1", now=101.0)
        True
        """
        asked, started, model = self.started.get(partition, (-1, 0.0, None))
        self.started[partition] = (min(asked, day), started, model)


def _install_pass_agent(
    app: faust.App,
    rt: Runtime,
    pipeline: Pipeline,
    customers: Any,
    ticks: Any,
    passes: Passes,
) -> None:
    sweeps = passes.running

    @app.agent(ticks, name="segmenter.clock-ticks", concurrency=1)
    async def on_tick(stream: Any) -> None:
        async for event in stream.events():
            partition = event.message.partition
            sweep = sweeps.get(partition)
            if sweep is None:
                if event.value != START:
                    continue  # (moved on a pass that has ended)
                passes.starting.pop(partition, None)
                # Every customer whose events are handled must be in the store
                # before the pass lists the keys (see Runtime.reviewed_through).
                await pipeline.drain()
                sweep = PartitionSweep(clock_ms=pipeline.sweep_clock(partition))
                sweeps[partition] = sweep
                passes.began(partition, day_of(sweep.clock_ms))
                rt.kpis.begin_pass(partition)  # the pass sums the KPIs again (models.kpis)
            try:
                # Committed first, so every customer handled so far is listed.
                await pipeline.drain()
                keys, cursor = partition_keys(customers, partition, sweep.cursor, SWEEP_CHUNK)
                rt.kpis.listed(partition, [orjson.dumps(key) for key in keys])
                await pipeline.review_partition(keys, partition, sweep)
            except Exception:  # never let a timer stop the worker; the clock loop retries
                log.exception("sweep of partition %s failed", partition)
                sweeps.pop(partition, None)
                passes.started.pop(partition, None)
                rt.kpis.abort_pass(partition)
                continue
            if len(keys) < SWEEP_CHUNK:  # the pass is complete
                finish_sweep(rt, partition, sweep)
                sweeps.pop(partition, None)
                rt.wakeups.training.set()  # the learner may close the day now
            else:
                sweep.cursor = cursor
            if rt.pacing():
                # The next chunk, or the partition's next day (it may be there
                # already), now rather than at the next tick.
                rt.wakeups.clock.set()


def _install_clock_timer(
    app: faust.App,
    rt: Runtime,
    pipeline: Pipeline,
    ticks: Any,
    clock_topic: Any,
    passes: Passes,
) -> None:
    async def tick_and_publish_clock() -> None:
        rt.metrics.set_stream_clock(rt.clock.now_ms)
        wall = time.monotonic()
        assigned = assigned_partitions(app, rt.settings.topic("purchases"))
        for partition in set(rt.kpis.partitions) - set(assigned):
            rt.kpis.drop(partition)  # moved to another worker
        for partition in assigned:
            now = pipeline.sweep_clock(partition)
            # A running pass goes on; a new one starts when the stream clock enters
            # a new day (silent customers move on), when a new model arrives
            # (customers move to its clusters), or every SWEEP_EVERY_SECONDS
            # (fresh segment statistics).
            model = rt.assigner_signature()
            # (now is 0 while the partition's first events are still to come.)
            if partition in passes.running:
                await ticks.send(value=GO_ON, partition=partition)
            elif not passes.busy(partition, wall) and (
                not rt.kpis.derived(partition)  # new here: derive its KPI sums
                or (now > 0 and passes.due(partition, day_of(now), model, wall))
            ):
                passes.started[partition] = (day_of(now), wall, model)
                passes.starting[partition] = wall
                await ticks.send(value=START, partition=partition)
            message = rt.partition_record(partition)
            if message != rt.remote_stats.get(f"p{partition}"):
                await clock_topic.send(key=f"p{partition}".encode(), value=encode(message))
        rt.metrics.set_segment_kpis(rt.kpis.local_totals(assigned), day_of(rt.clock.now_ms))

    # Every second, or as soon as a commit moved a partition into a new day
    # while events wait for the model (streams.worker.wakeup).
    install_loop(app, CLOCK_INTERVAL_SECONDS, rt.wakeups.clock, tick_and_publish_clock)


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
