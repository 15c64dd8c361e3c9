"""Outbox: outputs sent when a batch is processed, acknowledged at commit, retried on failure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.worker.outbox import Outbox


class FlakyTopic:
    """Records sends; the acknowledgement of the first ``fail_acks`` sends fails."""

    def __init__(self, fail_acks: int = 0) -> None:
        self.sent: list[bytes] = []
        self.fail_acks = fail_acks

    async def send(self, *, key: bytes | None, value: bytes) -> Any:
        self.sent.append(value)
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_acks > 0:
            self.fail_acks -= 1
            ack.set_exception(ConnectionError("broker unavailable"))
        else:
            ack.set_result(None)
        return ack


def test_records_sent_early_are_not_sent_again_by_the_commit() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        topic = FlakyTopic()
        box = Outbox({"segment-changes": topic})
        box.add("segment-changes", b"c1", b"a")
        await box.send()
        before_commit = list(topic.sent)
        await box.flush()
        return before_commit, topic.sent

    before_commit, after_commit = asyncio.run(scenario())
    assert before_commit == [b"a"]  # downstream has it before the commit
    assert after_commit == [b"a"]


def test_a_failed_acknowledgement_keeps_every_record_for_the_next_flush() -> None:
    async def scenario() -> tuple[FlakyTopic, Outbox, list[Any]]:
        topic = FlakyTopic(fail_acks=1)
        box = Outbox({"churn-risk": topic})
        box.add("churn-risk", b"c1", b"a", "churn_risk", 1_000.0)
        box.add("churn-risk", b"c2", b"b")
        await box.send()
        with pytest.raises(ConnectionError):
            await box.flush()
        assert len(box) == 2  # nothing dropped
        return topic, box, await box.flush()

    topic, box, records = asyncio.run(scenario())
    assert topic.sent == [b"a", b"b", b"a", b"b"]  # re-sent: same bytes, same event ids
    assert len(box) == 0
    assert [r.value for r in records] == [b"a", b"b"]
    assert records[0].sent_at is not None and records[0].kafka_ts_ms == 1_000.0
