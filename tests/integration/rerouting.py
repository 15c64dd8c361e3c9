"""What rerouting by customer_id must achieve, read back from the broker.

Shared by ``tests/integration/test_repartition.py`` and the fault test
``tests/integration/fault/test_repartition_crash.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from streams.topics import changelog_topic
from streams.worker.repartition import partition_for
from tests.integration.conftest import Stack

__all__ = ["customer_partitions", "expected_reroutes", "misplaced_records"]


def expected_reroutes(stack: Stack, counts: Counter[str]) -> Counter[tuple[str, str]]:
    """(topic, reason) -> messages that landed off their customer's partition,
    read back from where the producers actually put them."""
    rerouted: Counter[tuple[str, str]] = Counter()
    for topic, n in counts.items():
        records = asyncio.run(stack.consume(topic, until=lambda rs, n=n: len(rs) >= n))
        assert len(records) == n
        for record in records:
            home = partition_for(record["value"]["customer_id"].encode(), stack.partitions)
            if record["partition"] != home:
                rerouted[(topic, "unkeyed" if record["key"] is None else "wrong_partition")] += 1
    return rerouted


def customer_partitions(stack: Stack) -> dict[str, set[int]]:
    """customer id -> the partitions of the customers changelog holding a record of it."""

    async def read() -> list[tuple[bytes, int]]:
        consumer = AIOKafkaConsumer(
            changelog_topic(stack.settings, "customers"),
            bootstrap_servers=stack.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            ends = await consumer.end_offsets(list(consumer.assignment()))
            out: list[tuple[bytes, int]] = []
            while True:
                positions = {tp: await consumer.position(tp) for tp in ends}
                if all(positions[tp] >= end for tp, end in ends.items()):
                    return out
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    out += [(r.key, tp.partition) for r in records if r.key is not None]
        finally:
            await consumer.stop()

    where: dict[str, set[int]] = {}
    for key, partition in asyncio.run(read()):
        where.setdefault(orjson.loads(key), set()).add(partition)
    return where


def misplaced_records(stack: Stack, customers: dict[str, Any]) -> dict[str, set[int]]:
    """Customers without exactly one record, on their own partition: id -> partitions
    holding one (empty: missing). Empty when every customer is one whole record."""
    where = customer_partitions(stack)
    out = {}
    for customer_id in customers:
        home = partition_for(customer_id.encode(), stack.partitions)
        if where.get(customer_id, set()) != {home}:
            out[customer_id] = where.get(customer_id, set())
    return out
