"""What a crash costs in a long, shuffled history (issue #15, item 3).

``python -m streams.tools.bench_restart``: a simulated multi-year history whose
events arrive up to ``--late-days`` late (a backlog from several producers),
produced once per run, then read twice on fresh topics:

* **crash**: worker A reads the first half, is killed with SIGKILL, and worker
  B restarts on A's data dir (its RocksDB kept, as after a crash of the
  process) and reads the next quarter. B's rate is timed from its readiness,
  so whatever the restart makes it catch up (customers evaluated for every
  day they missed) is counted.
* **steady**: worker C reads the same history without a crash; its rate over
  the same quarter (half to three quarters) is the baseline of the same run.

The issue's goal: the restarted worker keeps at least half the first worker's
rate (B ≥ ½ A), and here also B against C over the same stretch.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from models.eventtime import MS_PER_DAY, parse_ts
from streams.tools.bench import (
    Samples,
    Throughput,
    bench_settings,
    delete_topics,
    drain,
    events_handled,
    metric_sum,
    produce_all,
    say,
    scrape_metrics,
)
from streams.tools.worker_process import WorkerProcess
from streams.topics import create_topics

__all__ = ["RestartResult", "main", "measure_restart", "passes_summary", "shuffled_history"]


@dataclass
class RestartResult:
    events: int
    first: Throughput  # A, 0 -> 1/2
    restarted: Throughput  # B, from ready to 1/4 more
    steady: Throughput  # C, 1/2 -> 3/4 without a crash

    def lines(self) -> list[str]:
        a, b, c = self.first.rate, self.restarted.rate, self.steady.rate
        return [
            f"history: {self.events:,} events",
            f"first worker (0 -> 1/2): {a:,.0f} events/s",
            f"restarted after SIGKILL (ready -> +1/4): {b:,.0f} events/s "
            f"({b / a:.0%} of the first worker)",
            f"no crash, same stretch (1/2 -> 3/4): {c:,.0f} events/s "
            f"(restarted = {b / c:.0%} of it)",
        ]


def shuffled_history(
    customers: int, days: int, late_days: float, seed: int, browsing_kept: float = 0.02
) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of a simulated history ending now, each event arriving
    up to ``late_days`` after its time, in arrival order. Only ``browsing_kept``
    of the browsing events are kept (the simulator's shoppers browse ~4 pages a
    day; a sparser history reaches years with many customers in a few minutes)."""
    from streams.tools.simulator import Simulation

    start_ms = (int(time.time() * 1000) // MS_PER_DAY - days - 1) * MS_PER_DAY
    sim = Simulation(customers=customers, days=days, seed=seed, start_ms=start_ms)
    rng = random.Random(seed)
    arriving = []
    for topic, event in sim.events():
        if topic == "browsing" and rng.random() >= browsing_kept:
            continue
        arriving.append(
            (parse_ts(event["ts"]) + rng.random() * late_days * MS_PER_DAY, topic, event)
        )
    arriving.sort(key=lambda item: item[0])
    return [(t, e["customer_id"].encode(), orjson.dumps(e)) for _, t, e in arriving]


def passes_summary(samples: Samples) -> str:
    """What the worker's daily passes did so far (``segmenter_sweep_*``).

    >>> from streams.tools.bench import parse_metrics
    >>> passes_summary(parse_metrics(
    ...     'segmenter_sweep_customers_total{outcome="evaluated"} 40\\n'
    ...     'segmenter_sweep_customers_total{outcome="skipped"} 160\\n'
    ...     'segmenter_sweep_seconds_total 0.01\\n'))
    'passes: 200 customer visits, 40 evaluated, 160 skipped, 0 refreshed; 0.0 s (50 µs per visit)'
    """
    name = "segmenter_sweep_customers_total"
    visits = metric_sum(samples, name)
    seconds = metric_sum(samples, "segmenter_sweep_seconds_total")
    return (
        f"passes: {visits:,.0f} customer visits, "
        f"{metric_sum(samples, name, outcome='evaluated'):,.0f} evaluated, "
        f"{metric_sum(samples, name, outcome='skipped'):,.0f} skipped, "
        f"{metric_sum(samples, name, outcome='refreshed'):,.0f} refreshed; {seconds:,.1f} s "
        f"({seconds / max(visits, 1) * 1e6:,.0f} µs per visit)"
    )


def _worker(bootstrap: str, prefix: str, data_dir: Path, port: int | None = None) -> WorkerProcess:
    # (a worker keeps its stores under <data dir>/worker-<web port>: B takes A's
    # port to find A's RocksDB, as a restarted process of the same deployment would)
    return WorkerProcess.configured(
        bootstrap=bootstrap, prefix=prefix, app_id=f"{prefix}app", partitions=4,
        data_dir=data_dir, port=port, log_level="warning",
    )  # fmt: skip


def measure_restart(
    bootstrap: str, customers: int, days: int, late_days: float, seed: int, timeout: float
) -> RestartResult:
    records = shuffled_history(customers, days, late_days, seed)  # (same for both runs)
    total = len(records)
    half, three_quarters = total // 2, total * 3 // 4
    say(f"restart: {total:,} events of {customers:,} customers over {days} days")
    tag = f"restart{uuid.uuid4().hex[:6]}"
    prefixes = [f"{tag}-crash-", f"{tag}-steady-"]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for prefix in prefixes:
                asyncio.run(create_topics(bench_settings(bootstrap, prefix, 4)))
                asyncio.run(produce_all(bootstrap, prefix, records, progress=lambda _sent: None))
            crash = Path(tmp) / "crash"
            a = _worker(bootstrap, prefixes[0], crash).start()
            a.wait_ready()
            first = drain(a, half, timeout)
            say(f"restart: A {passes_summary(scrape_metrics(a))}")
            a.kill()
            say(f"restart: A {first.rate:,.0f} events/s; killed at {half:,}")
            b = _worker(bootstrap, prefixes[0], crash, port=a.port).start()
            try:
                started = time.perf_counter()
                b.wait_ready(timeout)
                ready_s = time.perf_counter() - started
                working = drain(b, total // 4, timeout)
                handled = events_handled(scrape_metrics(b))
                restarted = Throughput(handled, time.perf_counter() - started)
                say(f"restart: B {passes_summary(scrape_metrics(b))}")
            finally:
                b.stop()
            say(
                f"restart: B {restarted.rate:,.0f} events/s from its start (ready after "
                f"{ready_s:.1f} s; {working.rate:,.0f} events/s once it handled events)"
            )
            c = _worker(bootstrap, prefixes[1], Path(tmp) / "steady").start()
            try:
                c.wait_ready()
                drain(c, half, timeout)
                steady = drain(c, three_quarters, timeout)
                say(f"restart: C {passes_summary(scrape_metrics(c))}")
            finally:
                c.stop()
            say(f"restart: C {steady.rate:,.0f} events/s")
        finally:
            asyncio.run(delete_topics(bootstrap, prefixes))
    return RestartResult(total, first, restarted, steady)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=450)
    parser.add_argument("--late-days", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    from streams.settings import Settings

    result = measure_restart(
        Settings().kafka_bootstrap, args.customers, args.days, args.late_days, args.seed,
        args.timeout,
    )  # fmt: skip
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
