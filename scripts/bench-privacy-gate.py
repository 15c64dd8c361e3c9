#!/usr/bin/env python
"""Cost of the privacy check that runs before validation (docs/security.md).

Per keyed, valid purchase, against a RocksDB partition store holding 100,000
customers and 10,000 suppressions (most lookups miss, as in production):

* the gate alone: ``privacy_gate.suppression_of(message_customer(m), ...)``;
* the baseline measured in the same run: ``schemas.validate`` of the message
  (what ``Pipeline.parse`` did per message before the gate);
* ``Pipeline.parse`` as it is now (gate + validation + key check + metrics).

    .venv/bin/python scripts/bench-privacy-gate.py [--messages 50000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from schemas import validate
from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.faust_adapter import partition_db
from streams.worker.privacy_gate import message_customer, suppression_of

T0 = 1_767_225_600_000


@dataclass
class Message:
    offset: int
    value: bytes
    key: bytes
    topic: str = "purchases"
    partition: int = 0
    timestamp: float = T0 / 1000
    generation_id: int = 1


def per_message_us(
    fn: Callable[[Message], object], messages: list[Message], repeats: int = 5
) -> float:
    """Best of ``repeats`` runs over all messages, in µs per message."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for message in messages:
            fn(message)
        best = min(best, (time.perf_counter() - started) / len(messages) * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    args = parser.parse_args()
    settings = Settings(
        data_dir=tempfile.mkdtemp(), store="rocksdb://", app_id="gate-bench", order_max_held=0
    )
    app = create_app(settings)
    app.segmenter.learner_salt = b"bench"
    pipeline = app.pipeline
    suppressions = partition_db(pipeline.suppressions.table.data, 0)
    customers = partition_db(pipeline.customers.table.data, 0)
    for i in range(10_000):
        suppressions[orjson.dumps(f"x{i:06d}")] = b'{"erased_ms":1}'
    for i in range(100_000):
        customers[orjson.dumps(f"c{i:06d}")] = b'{"f":{}}'
    messages = []
    for i in range(args.messages):
        cid = f"c{i % 100_000:06d}"
        value = {"event_id": f"e{i}", "customer_id": cid, "ts": T0 + i, "order_id": f"o{i}",
                 "amount": 10.0, "items": 1, "category": "books", "channel": "web"}  # fmt: skip
        messages.append(Message(i, orjson.dumps(value), cid.encode()))
    now_ms = int(time.time() * 1000)
    batch = pipeline.open_batch()
    s, c = pipeline.suppressions, pipeline.customers
    gate = per_message_us(lambda m: suppression_of(message_customer(m), 0, s, c), messages)
    baseline = per_message_us(
        lambda m: validate("purchases", m.value, now_ms=now_ms, max_future_ms=86_400_000), messages
    )
    parse = per_message_us(lambda m: pipeline.parse("purchases", m, batch), messages)
    print(f"messages: {len(messages):,} (best of 5 runs)")
    print(f"baseline, validate():          {baseline:6.2f} µs/message")
    ratio = gate / baseline
    print(f"privacy gate:                  {gate:6.2f} µs/message ({ratio:.2f}x validate)")
    print(f"Pipeline.parse (gate included): {parse:6.2f} µs/message")


if __name__ == "__main__":
    main()
