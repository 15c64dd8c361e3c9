"""What rerouting costs: ``python -m streams.tools.bench_routing [--hop]``.

**The check** (no broker needed). For messages already on their customer's
partition (the common case, and the only one whose cost every user pays), it
times, in the same run and on the same messages:

* ``key check (before)``: the check the worker made before rerouting existed
  (decode the key, compare it with ``customer_id``);
* ``partition check``: :meth:`streams.worker.repartition.Router.reason` with the
  customer's partition cached (a customer seen before);
* ``partition check, first sight``: the same with an empty cache (murmur2 in
  pure Python, once per customer id until the cache of 65,536 ids evicts it);
* ``validate``: schema validation of the same messages, for scale.

Results (best of five rounds, µs per message) are printed as a markdown table.

**The hop** (``--hop``, the broker at ``SEGMENTER_KAFKA_BOOTSTRAP``). One
seeded simulated history is produced three times, to fresh topics: keyed and on
the partition murmur2 gives (``direct``), keyed but every message one
partition off (``rerouted``, what librdkafka's default partitioner does to
three keys in four), and without a key on a random partition (``unkeyed``: a
customer's events spread over every source partition, merged again by the
progress marks of ``streams.worker.reroute_merge``); a ``segmenter worker`` drains
each, and its events per CPU-second are compared, with the forwards and
progress marks it produced. Topics are deleted afterwards.

``docs/benchmark.md`` keeps a run of both.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from schemas import validate
from streams.settings import Settings
from streams.worker.repartition import Router, partition_for

__all__ = ["Hop", "Message", "main", "measure", "measure_hop"]


@dataclass
class Message:
    """The fields of a consumed message the check reads."""

    key: bytes | None
    partition: int
    value: bytes


def messages(customers: int, partitions: int) -> list[Message]:
    """One purchase per customer, keyed and on the customer's partition."""
    router = Router(partitions)
    out = []
    for i in range(customers):
        customer_id = f"c{i:07d}"
        value = orjson.dumps(
            {"event_id": f"e{i}", "customer_id": customer_id, "ts": 1_767_225_600_000 + i,
             "order_id": f"o{i}", "amount": 12.5, "items": 1, "category": "books",
             "channel": "web"}
        )  # fmt: skip
        out.append(Message(customer_id.encode(), router.partition_of(customer_id), value))
    return out


def best_of(rounds: int, run: Callable[[], None], per: int) -> float:
    """Best time of ``rounds`` runs, in µs per item."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best / per * 1e6


def measure(customers: int = 50_000, partitions: int = 12, rounds: int = 5) -> dict[str, float]:
    """µs per message of each variant (see the module docstring)."""
    batch = messages(customers, partitions)
    ids = [m.key.decode() for m in batch if m.key is not None]
    pairs = list(zip(batch, ids, strict=True))

    def key_check() -> None:
        for message, customer_id in pairs:
            key = message.key.decode("utf-8", "replace") if message.key is not None else None
            if key != customer_id:
                raise AssertionError

    router = Router(partitions)

    def partition_check() -> None:
        reason = router.reason
        for message, customer_id in pairs:
            if reason(message, customer_id) is not None:
                raise AssertionError

    partition_check()  # every customer seen once: cached

    def first_sight() -> None:
        fresh = Router(partitions)
        for message, customer_id in pairs:
            fresh.reason(message, customer_id)

    def validation() -> None:
        for message in batch:
            validate("purchases", message.value)

    return {
        "key check (before)": best_of(rounds, key_check, customers),
        "partition check": best_of(rounds, partition_check, customers),
        "partition check, first sight": best_of(rounds, first_sight, customers),
        "validate": best_of(rounds, validation, customers),
    }


async def produce_placed(
    bootstrap: str, prefix: str, records: Iterable[Any], partitions: int, *, mode: str
) -> int:
    """Send records keyed on their murmur2 partition (``direct``), keyed one partition
    off (``rerouted``), or without a key on a seeded random partition (``unkeyed``)."""
    from streams.ops.producing import produce

    spread = random.Random(7)

    def placed() -> Iterator[tuple[str, bytes | None, bytes, int]]:
        for topic, key, value in records:
            if mode == "unkeyed":
                yield prefix + topic, None, value, spread.randrange(partitions)
            else:
                partition = (partition_for(key, partitions) + (mode == "rerouted")) % partitions
                yield prefix + topic, key, value, partition

    return await produce(bootstrap, placed(), linger_ms=20)


@dataclass
class Hop:
    """One mode of :func:`measure_hop`."""

    events: int
    cpu_rate: float | None  # events per CPU-second of the worker
    forwards: int  # messages forwarded through the repartition topic
    marks: int  # progress marks sent (to every repartition partition)
    late: int  # events dead-lettered as older than the dedup window


def measure_hop(
    bootstrap: str, events: int = 20_000, customers: int = 500, partitions: int = 4
) -> dict[str, Hop]:
    """mode -> what the worker did with the same history (see the module docstring)."""
    from streams.tools.bench import (
        bench_settings,
        delete_topics,
        drain,
        history_records,
        metric_sum,
        scrape_metrics,
    )
    from streams.tools.worker_process import WorkerProcess
    from streams.topics import create_topics

    tag = f"hop{uuid.uuid4().hex[:6]}"
    end_ms = int(time.time() * 1000)
    records = list(history_records(customers, events, seed=3, end_ms=end_ms, bad=0, dup=0))
    out: dict[str, Hop] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for mode in ("direct", "rerouted", "unkeyed"):
                prefix = f"{tag}-{mode}-"
                settings = bench_settings(bootstrap, prefix, partitions)
                asyncio.run(create_topics(settings))
                total = asyncio.run(
                    produce_placed(bootstrap, prefix, records, partitions, mode=mode)
                )
                worker = WorkerProcess.configured(
                    bootstrap=bootstrap,
                    prefix=prefix,
                    app_id=settings.app_id,
                    partitions=partitions,
                    data_dir=Path(tmp) / mode,
                ).start()
                try:
                    worker.wait_ready()
                    done = drain(worker, total, timeout=900)
                    time.sleep(1.0)  # (the last marks and their commit)
                    samples = scrape_metrics(worker)
                finally:
                    worker.stop()
                forwards = int(metric_sum(samples, "segmenter_events_repartitioned_total"))
                sent = int(metric_sum(samples, "segmenter_outputs_total", topic="repartition"))
                late = int(metric_sum(samples, "segmenter_events_rejected_total", reason="late"))
                out[mode] = Hop(total, done.cpu_rate, forwards, sent - forwards, late)
        finally:
            asyncio.run(delete_topics(bootstrap, [f"{tag}-"]))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hop", action="store_true", help="also measure the hop (broker)")
    parser.add_argument("--hop-events", type=int, default=20_000)
    args = parser.parse_args(argv)
    results = measure(args.customers, args.partitions, args.rounds)
    baseline = results["key check (before)"]
    print(f"{args.customers} customers, {args.partitions} partitions, best of {args.rounds}\n")
    print("| per message | µs | vs key check |\n|---|---:|---:|")
    for name, micros in results.items():
        print(f"| {name} | {micros:.3f} | {micros / baseline:.1f}x |")
    if args.hop:
        hop = measure_hop(Settings().kafka_bootstrap, events=args.hop_events)
        direct = hop["direct"].cpu_rate
        print(
            "\n| worker, same history | events | events per CPU-second | vs direct "
            "| forwards | progress marks | late |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for mode, run in hop.items():
            rate = run.cpu_rate
            ratio = f"{rate / direct:.2f}x" if rate and direct else "-"
            shown = f"{rate:,.0f}" if rate else "-"
            print(
                f"| {mode} | {run.events:,} | {shown} | {ratio} | {run.forwards:,} "
                f"| {run.marks:,} | {run.late:,} |"
            )


if __name__ == "__main__":
    main()
