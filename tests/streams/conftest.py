"""Fixtures and helpers of the stream tests: a worker app without Kafka, its
consumer (never started), input records fed to the worker as its consumer
would, and input events of customer ``c1``."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from streams.settings import Settings
from streams.worker.app import create_app

__all__ = ["Feeder", "RecordingTopic", "event", "purchase", "record"]


def record(
    topic: str, offset: int, value: bytes, key: bytes | None = b"c1", partition: int = 0
) -> ConsumerRecord[bytes, bytes]:
    """An input record as aiokafka hands it to the consumer (``topic``: full name)."""
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=int(time.time() * 1000),
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value),
        headers=(),
    )


class Feeder:
    """Feeds input records to a worker app's batch sink, one fetch per :meth:`put`,
    the way ``streams.worker.faust_adapter.BatchConsumer`` does (no Kafka needed).

    Offsets count up per topic-partition; set ``offsets[(topic, partition)]``
    to deliver some again (a re-delivery after a crash).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.offsets: dict[tuple[str, int], int] = defaultdict(int)

    async def put(
        self, topic: str, value: bytes, key: bytes | None = b"c1", partition: int = 0
    ) -> bool:
        """Deliver one record of the logical input ``topic``; ``True`` once committed."""
        full = self.app.segmenter.settings.topic(topic)
        offset = self.offsets[(topic, partition)]
        self.offsets[(topic, partition)] = offset + 1
        futures = await self.app.batch_sink.handle(
            [(TP(full, partition), [record(full, offset, value, key, partition)])]
        )
        return all(await asyncio.gather(*futures))


class RecordingTopic:
    """Stands in for an output topic: keeps what the pipeline sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, Any]] = []

    async def send(self, key: bytes | None = None, value: bytes | None = b"", **_: Any) -> None:
        # (a None value is a tombstone of a compacted topic: segment-memberships)
        self.sent.append((key, None if value is None else orjson.loads(value)))


@pytest.fixture
def app(make_app: Any) -> Any:
    return make_app()


@pytest.fixture
def make_app(tmp_path: Any) -> Any:
    """``make_app(**settings)``: a worker app without Kafka, outputs recorded."""
    return lambda **settings: _test_app(tmp_path, **settings)


def _test_app(tmp_path: Any, **settings: Any) -> Any:
    # Events in arrival order: the event-time order needs a running consumer's
    # high watermarks (tests/models/test_ordering.py, tests/integration).
    # One partition: test contexts deliver every message on partition 0, which
    # is then every customer's (streams.worker.repartition reroutes the others).
    defaults = {"store": "memory://", "app_id": "agent-tests", "order_max_held": 0, "partitions": 1}
    app = create_app(Settings(data_dir=tmp_path, **{**defaults, **settings}))
    app.segmenter.broadcast_caught_up.set()  # no broadcast topics in a test context
    app.segmenter.learner_salt = b"agent-tests"  # (a worker reads it before any event)
    app.pipeline.outputs = defaultdict(RecordingTopic)
    changelog: list[tuple[str, bytes, bytes | None, int]] = []

    async def record_changelog(topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        changelog.append((topic, key, value, partition))

    app.pipeline.customers.send = record_changelog
    app.pipeline.suppressions.send = record_changelog
    app.changelog = changelog
    app.finalize()
    app.conf.store = "memory://"
    return app


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[Any]:
    """A real Faust consumer of a Segmenter app (never started: no broker needed)."""
    app = create_app(Settings(data_dir=tmp_path, store="memory://", topic_prefix="t-"))
    yield app.consumer


def event(event_id: str, ts: int, **fields: Any) -> bytes:
    """An input event of customer ``c1``, encoded."""
    return orjson.dumps({"event_id": event_id, "customer_id": "c1", "ts": ts, **fields})


def purchase(event_id: str, ts: int, amount: float = 50.0) -> bytes:
    """A purchase of customer ``c1``, encoded."""
    return event(event_id, ts, order_id=event_id, amount=amount, items=1, category="books",
                 channel="web")  # fmt: skip
