"""The batched state table and the commit order of a batch, without Kafka."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import faust
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import OUTPUT_TOPICS
from streams.settings import Settings
from streams.topics import CLOCK_TOPIC
from streams.worker.app import create_app
from streams.worker.state_table import StateTable
from tests.streams.conftest import Feeder

T0 = 1_767_225_600_000


@dataclass
class Metadata:
    partition: int
    offset: int


class MemoryStore(dict[bytes, bytes]):
    def __init__(self) -> None:
        super().__init__()
        self.persisted: dict[Any, int] = {}

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp] = offset


class ChangelogTopic:
    def get_topic_name(self) -> str:
        return "customers-changelog"


class FakeTable:
    def __init__(self) -> None:
        self.data = MemoryStore()
        self.changelog_topic = ChangelogTopic()


class Broker:
    """Acknowledges records (offsets per partition) and logs what happens in order."""

    def __init__(self, log: list[str], fail: int = 0) -> None:
        self.log = log
        self.fail = fail
        self.offsets: dict[int, int] = defaultdict(int)

    async def send(self, topic: str, key: bytes, value: bytes | None, partition: int) -> Any:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker unavailable")
        self.log.append(f"{topic}:{key.decode()}")
        future = asyncio.get_running_loop().create_future()
        future.set_result(Metadata(partition, self.offsets[partition]))
        self.offsets[partition] += 1
        return future


def table(fail: int = 0) -> tuple[StateTable, FakeTable, list[str]]:
    log: list[str] = []
    fake = FakeTable()
    return StateTable(fake, Broker(log, fail).send), fake, log


KEYS_APP = faust.App("keys", store="memory://")
KEYS_TABLE = KEYS_APP.Table("t", key_type=str, value_type=bytes)


@given(st.text())
def test_keys_are_encoded_exactly_as_faust_encodes_table_keys(key: str) -> None:
    # Recovery and GET /customers decode the keys we write with Faust's codec.
    expected = KEYS_APP.serializers.dumps_key(str, key, serializer=KEYS_TABLE.key_serializer)
    assert StateTable(KEYS_TABLE, Broker([]).send).key_bytes(key) == expected


async def test_one_changelog_record_per_key_per_batch_then_the_store() -> None:
    state, fake, log = table()
    batch = state.open_layer()
    for n in range(5):
        state.put(batch, "c1", 0, f"v{n}".encode())
    state.put(batch, "c2", 1, b"w")
    assert fake.data == {}  # nothing durable before the flush
    assert state.get("c1", 0) == b"v4"  # but readable at once
    assert await state.flush(batch) == 2
    assert log == ['customers-changelog:"c1"', 'customers-changelog:"c2"']
    assert fake.data == {b'"c1"': b"v4", b'"c2"': b"w"}
    assert sorted(offset for offset in fake.data.persisted.values()) == [0, 0]
    assert await state.flush(batch) == 0  # flushing twice sends nothing again


async def test_a_later_batch_is_read_over_an_earlier_uncommitted_one() -> None:
    state, fake, _ = table()
    first, second = state.open_layer(), state.open_layer()
    state.put(first, "c1", 0, b"old")
    state.put(second, "c1", 0, b"new")
    assert state.get("c1", 0) == b"new"
    await state.flush(first)
    assert state.get("c1", 0) == b"new"  # the second is still pending
    await state.flush(second)
    assert fake.data[b'"c1"'] == b"new"


async def test_a_failed_flush_keeps_the_batch_and_a_retry_writes_it() -> None:
    state, fake, _ = table(fail=1)
    batch = state.open_layer()
    state.put(batch, "c1", 0, b"v")
    with pytest.raises(ConnectionError):
        await state.flush(batch)
    assert fake.data == {} and state.get("c1", 0) == b"v"
    assert await state.flush(batch) == 1
    assert fake.data == {b'"c1"': b"v"}


async def test_a_deletion_is_a_tombstone_and_removes_the_key() -> None:
    state, fake, log = table()
    batch = state.open_layer()
    state.put(batch, "c1", 0, b"v")
    await state.flush(batch)
    batch = state.open_layer()
    state.put(batch, "c1", 0, None)
    assert state.get("c1", 0) is None
    await state.flush(batch)
    assert fake.data == {} and len(log) == 2


class OrderedTopic:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def send(self, *, key: bytes | None, value: bytes | None) -> Any:
        record = orjson.loads(value) if value is not None else {}  # (None: a tombstone)
        self.log.append(f"{self.name}:{record.get('segment_type', '')}")
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def purchase(event_id: str, ts: int) -> bytes:
    return orjson.dumps(
        {"event_id": event_id, "customer_id": "c1", "ts": ts, "order_id": event_id,
         "amount": 20.0, "items": 1, "category": "books", "channel": "web"}
    )  # fmt: skip


@pytest.fixture
def ordered_app(tmp_path: Any) -> Any:
    app = create_app(  # (one partition: test contexts deliver on partition 0)
        Settings(
            store="memory://",
            data_dir=tmp_path,
            app_id="order-tests",
            order_max_held=0,
            partitions=1,
        )
    )
    app.segmenter.broadcast_caught_up.set()
    app.segmenter.learner_salt = b"order-tests"
    log: list[str] = []
    app.pipeline.outputs = {name: OrderedTopic(name, log) for name in (*OUTPUT_TOPICS, CLOCK_TOPIC)}
    for state in (app.pipeline.customers, app.pipeline.suppressions):
        state.send = Broker(log).send
    app.finalize()
    app.conf.store = "memory://"
    app.order_log = log
    return app


async def test_outputs_are_acknowledged_before_the_state_and_confirmations_after(
    ordered_app: Any,
) -> None:
    log = ordered_app.order_log
    feeder = Feeder(ordered_app)
    await feeder.put("purchases", purchase("o1", T0), key=b"c1")
    first_state = next(i for i, line in enumerate(log) if "changelog" in line)
    assert any(line.startswith("segment-changes") for line in log[:first_state])
    log.clear()
    erase = orjson.dumps({"event_id": "x1", "customer_id": "c1", "ts": T0 + 1, "action": "erase"})
    await feeder.put("privacy", erase, key=b"c1")
    # The "done" confirmation leaves only once the tombstone is durable.
    assert log[-1] == "privacy-confirmations:"
    assert any("customers-changelog" in line for line in log[:-1])
