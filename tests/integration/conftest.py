"""Real-broker fixtures: a Kafka broker, isolated topic sets, worker processes.

Every test gets its own topic prefix and consumer group, so tests never see
each other's data on the shared broker that `make test` started.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streams.ops.broker import LocalBroker, metadata_ping
from streams.ops.producing import produce
from streams.settings import Settings
from streams.tools.worker_process import REPO, SEGMENTER, WorkerProcess, free_port
from streams.topics import create_topics

__all__ = [
    "REPO",
    "SEGMENTER",
    "Stack",
    "Worker",
    "free_port",
    "handled_total",
    "metric_total",
    "wait_for",
]

# One worker harness for the tests and the benchmarks (streams.tools.worker_process).
Worker = WorkerProcess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def bootstrap() -> str:
    """The broker `make test` started (started here if it is not running)."""
    settings = Settings()
    try:
        asyncio.run(metadata_ping(settings.kafka_bootstrap))
    except Exception:
        LocalBroker(REPO / ".segmenter", heap=settings.kafka_heap).start()
    return settings.kafka_bootstrap


@dataclass
class Stack:
    """One isolated Segmenter deployment on the shared broker."""

    bootstrap: str
    root: Path
    prefix: str
    app_id: str
    partitions: int = 4
    workers: list[Worker] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings(
            kafka_bootstrap=self.bootstrap,
            topic_prefix=self.prefix,
            app_id=self.app_id,
            partitions=self.partitions,
        )

    def topic(self, name: str) -> str:
        return self.prefix + name

    def worker(self, name: str = "w1", port: int | None = None, start: bool = True) -> Worker:
        worker = WorkerProcess.configured(
            bootstrap=self.bootstrap,
            prefix=self.prefix,
            app_id=self.app_id,
            partitions=self.partitions,
            data_dir=self.root / name,
            port=port,
            extra_env=self.extra_env,
        )
        self.workers.append(worker)
        if start:
            worker.start()
            worker.wait_ready(timeout=90)
        return worker

    async def produce(
        self, records: list[tuple[str, Any]], key: Callable[[Any], Any] | None = None
    ) -> None:
        """Send (topic, event-or-bytes) records keyed by customer_id."""

        def encoded() -> Iterator[tuple[str, bytes | None, bytes]]:
            for topic, event in records:
                if isinstance(event, bytes | bytearray):
                    value, k = bytes(event), None
                else:
                    value, k = orjson.dumps(event), event.get("customer_id")
                if key is not None:
                    k = key(event)
                yield self.topic(topic), k.encode() if isinstance(k, str) else k, value

        await produce(self.bootstrap, encoded(), linger_ms=5)

    async def consume(
        self,
        topic: str,
        until: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Read ``topic`` from the beginning until ``until(records)`` or timeout."""
        consumer = AIOKafkaConsumer(
            self.topic(topic),
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and not until(records):
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    for record in batch:
                        records.append(
                            {
                                "key": record.key.decode() if record.key else None,
                                "value": orjson.loads(record.value) if record.value else None,
                                "partition": record.partition,
                                "offset": record.offset,
                            }
                        )
        finally:
            await consumer.stop()
        return records

    async def consume_raw(
        self, full_topic: str, timeout: float = 5.0
    ) -> list[tuple[bytes | None, bytes | None]]:
        """Every (key, value) of a topic (full name), from the beginning."""
        consumer = AIOKafkaConsumer(
            full_topic,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        records: list[tuple[bytes | None, bytes | None]] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                if not batches and records:
                    break
                for batch in batches.values():
                    records.extend((r.key, r.value) for r in batch)
        finally:
            await consumer.stop()
        return records

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def stack_factory(bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(partitions: int = 4, **extra_env: str) -> Stack:
        tag = uuid.uuid4().hex[:8]
        stack = Stack(
            bootstrap=bootstrap,
            root=tmp_path / f"stack-{tag}",
            prefix=f"t{tag}-",
            app_id=f"segmenter-{tag}",
            partitions=partitions,
            extra_env=extra_env,
        )
        asyncio.run(create_topics(stack.settings))
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    return stack_factory()


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Poll ``predicate`` until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def metric_total(worker: Worker, name: str, **labels: str) -> float:
    """Sum of a metric's samples on a worker's /metrics, filtered by labels."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(worker.text("/metrics")):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def handled_total(workers: list[Worker]) -> float:
    """Input messages a set of workers finished with: processed, duplicate or rejected."""
    return sum(
        metric_total(w, "segmenter_events_processed_total")
        + metric_total(w, "segmenter_events_duplicate_total")
        + metric_total(w, "segmenter_events_rejected_total")
        for w in workers
    )
