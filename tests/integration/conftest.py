"""Real-broker fixtures: a Kafka broker, isolated topic sets, worker processes.

Every test gets its own topic prefix and consumer group, so tests never see
each other's data on the shared broker that `make test` started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.ops.broker import LocalBroker, metadata_ping
from streams.settings import Settings
from streams.topics import create_topics

REPO = Path(__file__).resolve().parents[2]
SEGMENTER = str(Path(sys.executable).with_name("segmenter"))


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Worker:
    """A `segmenter worker` subprocess."""

    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    command: list[str] = field(default_factory=lambda: [SEGMENTER, "worker"])

    def start(self) -> Worker:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            cwd=REPO, start_new_session=True,
        )  # fmt: skip
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, orjson.loads(body)
            except orjson.JSONDecodeError:
                return exc.code, body.decode(errors="replace")

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return str(response.read().decode())

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                status, _ = self.get("/ready")
                if status == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


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
        port = port or free_port()
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "SEGMENTER_KAFKA_BOOTSTRAP": self.bootstrap,
                "SEGMENTER_TOPIC_PREFIX": self.prefix,
                "SEGMENTER_APP_ID": self.app_id,
                "SEGMENTER_PARTITIONS": str(self.partitions),
                "SEGMENTER_WEB_PORT": str(port),
                "SEGMENTER_DATA_DIR": str(data_dir),
                "SEGMENTER_LOG_LEVEL": "info",
                **self.extra_env,
            }
        )
        worker = Worker(env=env, port=port, log_path=data_dir / "worker.log")
        self.workers.append(worker)
        if start:
            worker.start()
            worker.wait_ready()
        return worker

    async def produce(
        self, records: list[tuple[str, Any]], key: Callable[[Any], Any] | None = None
    ) -> None:
        """Send (topic, event-or-bytes) records keyed by customer_id."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks="all")
        await producer.start()
        try:
            for topic, event in records:
                if isinstance(event, bytes | bytearray):
                    value, k = bytes(event), None
                else:
                    value, k = orjson.dumps(event), event.get("customer_id")
                if key is not None:
                    k = key(event)
                await producer.send(
                    self.topic(topic), value=value, key=k.encode() if isinstance(k, str) else k
                )
            await producer.flush()
        finally:
            await producer.stop()

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
