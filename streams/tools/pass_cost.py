"""The daily passes' cost over a long history, in-process: ``python -m streams.tools.pass_cost``.

The restart benchmark's population (:func:`streams.tools.bench_restart.shuffled_history`:
the simulator's default mix, browsing thinned) goes through the worker's own
input handling one event day at a time, each day followed by the next day's
pass over every partition, as a worker that keeps pace with its cluster model
runs them; then ``--silent-days`` passes without events (the population turned
dormant). No Kafka: the hot path tool's stand-ins (:mod:`streams.tools.hotpath`),
a cluster model trained on the first quarter. Twice, with the due-day index
(:mod:`streams.worker.due_index`) and without (``SEGMENTER_SWEEP_DUE_INDEX=false``),
in the same run. Reports CPU seconds of the events and of the passes, and the
passes' customers by outcome (``segmenter_sweep_customers_total``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from models.eventtime import day_of, parse_ts

__all__ = ["PassCost", "main", "measure"]

OUTCOMES = ("evaluated", "skipped", "refreshed", "not_due")


@dataclass
class PassCost:
    """One run: CPU seconds and pass outcomes, while events come and after."""

    indexed: bool
    events_cpu_s: float = 0.0
    passes_cpu_s: float = 0.0  # the passes of the days with events
    silent_cpu_s: float = 0.0  # the passes after the last event
    visits: int = 0
    silent_visits: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """The run as a markdown table row."""
        mode = "with the index" if self.indexed else "without (`SEGMENTER_SWEEP_DUE_INDEX=false`)"
        per = self.passes_cpu_s / max(self.visits, 1) * 1e6
        silent = self.silent_cpu_s / max(self.silent_visits, 1) * 1e6
        counts = ", ".join(f"{self.outcomes.get(o, 0):,} {o}" for o in OUTCOMES)
        return (
            f"| {mode} | {self.events_cpu_s:.1f} s | {self.passes_cpu_s:.1f} s ({per:.0f} µs "
            f"per customer) | {self.silent_cpu_s:.1f} s ({silent:.0f} µs per customer) "
            f"| {counts} |"
        )


def _event_day(value: bytes) -> int:
    ts = orjson.loads(value)["ts"]
    return day_of(ts if type(ts) is int else parse_ts(ts))


async def _replay(
    app: Any, by_day: dict[int, list[Any]], silent_days: int, cost: PassCost, partitions: int
) -> None:
    from streams.tools.hotpath import _fetches, _run, pass_day

    first, last = min(by_day), max(by_day)
    for day in range(first, last + 1 + silent_days):
        if by_day.get(day):
            cost.events_cpu_s += await _run(app, list(_fetches(by_day[day], "", 1000, partitions)))
        started = time.thread_time()
        visited = await pass_day(app, day + 1)
        spent = time.thread_time() - started
        if day <= last:
            cost.passes_cpu_s += spent
            cost.visits += visited
        else:
            cost.silent_cpu_s += spent
            cost.silent_visits += visited


def measure(
    customers: int = 300, days: int = 200, silent_days: int = 60, seed: int = 42
) -> tuple[int, list[PassCost]]:
    """The history's event count, and one :class:`PassCost` with the index, one without."""
    from streams.tools.bench_restart import shuffled_history
    from streams.tools.hotpath import _train, _worker

    records = shuffled_history(customers, days, 0.0, seed)
    partitions = 4
    model = _train(records[: len(records) // 4], 1000, partitions)
    by_day: dict[int, list[Any]] = defaultdict(list)
    for record in records:
        by_day[_event_day(record[2])].append(record)
    costs = []
    with tempfile.TemporaryDirectory() as tmp:
        for indexed in (True, False):
            app = _worker(Path(tmp) / str(indexed), model, sweep_due_index=indexed)
            cost = PassCost(indexed)
            asyncio.run(_replay(app, by_day, silent_days, cost, partitions))
            metrics = app.segmenter.metrics
            for outcome in OUTCOMES:
                value = metrics.sample("segmenter_sweep_customers_total", outcome=outcome)
                cost.outcomes[outcome] = int(value or 0)
            costs.append(cost)
    return len(records), costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.tools.pass_cost", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--days", type=int, default=200)
    parser.add_argument("--silent-days", type=int, default=60)
    args = parser.parse_args(argv)
    events, costs = measure(args.customers, args.days, args.silent_days)
    print(
        f"{events:,} events of {args.customers:,} customers over {args.days} days, then "
        f"{args.silent_days} days without events; CPU seconds in-process\n"
    )
    print(
        "| daily pass | events | passes while events come | passes after the last event "
        "| customers visited by the passes |"
    )
    print("|---|---|---|---|---|")
    for cost in costs:
        print(cost.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
