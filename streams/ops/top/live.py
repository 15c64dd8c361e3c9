"""``segmenter top``: the live view, refreshing in place (or one line at a time in logs).

Every ``interval`` seconds the workers' ``/metrics`` and ``/segments`` are read
(:mod:`streams.ops.top.collect`); the output topics are tailed, when the brokers
are reachable, for the notable changes (:mod:`streams.ops.top.notable`). On a
terminal the frame is redrawn in place (rich ``Live``); otherwise — a CI log,
a pipe — a summary line is printed every ``interval``, and each alert (at risk,
lapsed, churn high) once, as it arrives; cluster moves are counted in the
summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from rich.console import Console
from rich.live import Live

from streams.ops.top.collect import MetricsSample, fetch_overview
from streams.ops.top.notable import NotableChange, NotableFeed
from streams.ops.top.render import frame, notable_line, summary_line
from streams.settings import Settings
from streams.worker.faust_adapter import refresh_metadata

__all__ = ["run_top"]

OUTPUTS = ("segment-changes", "churn-risk")
BACKLOG = 200  # records per partition read at the start, so recent changes show at once


@dataclass
class TailStatus:
    note: str | None = "connecting to the output topics…"


async def tail_outputs(
    settings: Settings,
    feed: NotableFeed,
    status: TailStatus,
    on_new: Callable[[NotableChange], None],
    stop: asyncio.Event,
) -> None:
    """Feed the notable changes of the output topics to ``feed`` until ``stop``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=10_000,
    )
    try:
        await asyncio.wait_for(consumer.start(), 15)
    except Exception as exc:
        status.note = f"output topics not reachable on {settings.kafka_bootstrap} ({exc!r:.60})"
        with contextlib.suppress(Exception):
            await consumer.stop()
        return
    names = {settings.topic(name): name for name in OUTPUTS}
    try:
        partitions: list[Any] = []
        while not partitions and not stop.is_set():
            await refresh_metadata(consumer)
            partitions = [
                TopicPartition(topic, p)
                for topic in names
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                status.note = f"waiting for the topics {', '.join(names)}"
                await _wait(stop, 5.0)
        if stop.is_set():
            return
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(starts[tp], ends[tp] - BACKLOG))
        status.note = None
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    if not record.value:
                        continue
                    try:
                        value = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(value, dict) and feed.add(names[tp.topic], value):
                        on_new(feed.latest[0])
    finally:
        await consumer.stop()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run_top(
    urls: Sequence[str],
    settings: Settings,
    interval: float | None = None,
    duration: float | None = None,
    kafka: bool = True,
    console: Console | None = None,
) -> None:
    """Show the view until interrupted (SIGINT, SIGTERM) or for ``duration`` seconds."""
    import aiohttp

    console = console or Console(highlight=False)
    on_terminal = console.is_terminal
    interval = interval or (1.0 if on_terminal else 5.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    if duration:
        loop.call_later(duration, stop.set)

    feed = NotableFeed(keep=10)
    status = TailStatus(None if kafka else "output topics not read (--no-kafka)")

    def on_new(change: NotableChange) -> None:
        # In a log, alerts get a line each; cluster moves (a new model moves
        # many customers at once) are counted in the summary lines.
        if not on_terminal and change.severity == "alert":
            console.print(notable_line(change), markup=False, soft_wrap=True)

    tail = (
        asyncio.create_task(tail_outputs(settings, feed, status, on_new, stop)) if kafka else None
    )
    previous: MetricsSample | None = None
    timeout = aiohttp.ClientTimeout(total=max(2.0, min(interval, 5.0)))
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            if on_terminal:
                with Live(console=console, auto_refresh=False, transient=False) as live:
                    while not stop.is_set():
                        overview, previous = await fetch_overview(session, urls, previous)
                        view = frame(
                            overview, feed.latest, feed.seen_total, status.note, console.height
                        )
                        live.update(view, refresh=True)
                        await _wait(stop, interval)
            else:
                # Scraped every second (a rate needs two scrapes), printed every interval.
                next_line = time.monotonic() + 1.0
                while not stop.is_set():
                    overview, previous = await fetch_overview(session, urls, previous)
                    if time.monotonic() >= next_line:
                        line = summary_line(overview, feed.seen_total, feed.by_kind["cluster"])
                        if overview.errors:
                            line += " · " + "; ".join(overview.errors[:2])
                        console.print(line, markup=False, soft_wrap=True)
                        next_line = time.monotonic() + interval
                    await _wait(stop, 1.0)
    finally:
        stop.set()
        if tail is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(tail, 10)
