"""What the per-message partition check costs: ``python -m streams.bench_routing``.

No broker needed. For messages already on their customer's partition (the
common case, and the only one whose cost every user pays), it times, in the
same run and on the same messages:

* ``key check (before)``: the check the worker made before rerouting existed
  (decode the key, compare it with ``customer_id``);
* ``partition check``: :meth:`streams.repartition.Router.reason` with the
  customer's partition cached (a customer seen before);
* ``partition check, first sight``: the same with an empty cache (murmur2 in
  pure Python, once per customer id until the cache of 65,536 ids evicts it);
* ``validate``: schema validation of the same messages, for scale.

Results (best of five rounds, µs per message) are printed as a markdown table;
``docs/benchmark.md`` keeps a run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from schemas import validate
from streams.repartition import Router

__all__ = ["Message", "main", "measure"]


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = measure(args.customers, args.partitions, args.rounds)
    baseline = results["key check (before)"]
    print(f"{args.customers} customers, {args.partitions} partitions, best of {args.rounds}\n")
    print("| per message | µs | vs key check |\n|---|---:|---:|")
    for name, micros in results.items():
        print(f"| {name} | {micros:.3f} | {micros / baseline:.1f}x |")


if __name__ == "__main__":
    main()
