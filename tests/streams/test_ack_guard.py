"""A message no stream processed is never acked, so its offset is never committed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.app import create_app
from streams.settings import Settings

PURCHASES = TP("t-purchases", 0)


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[Any]:
    """A real Faust consumer of a Segmenter app (never started: no broker needed)."""
    app = create_app(Settings(data_dir=tmp_path, store="memory://", topic_prefix="t-"))
    app.topics.acks_enabled_for = lambda topic: True  # (the conductor decides this once started)
    yield app.consumer


def message(offset: int, *, tracked: bool) -> ConsumerMessage:
    msg = ConsumerMessage(
        PURCHASES.topic, PURCHASES.partition, offset, 0.0, 0, None, b"c1", b"{}", None
    )
    msg.tracked = tracked  # Faust tracks every message it hands to a stream
    return msg


def test_a_message_a_stream_skipped_is_not_acked(consumer: Any) -> None:
    # Faust's stream iterator skips a message pulled while the flow is suspended
    # (a stop, a rebalance) or from an older generation, and acks it untracked.
    skipped = message(12, tracked=False)
    assert skipped.ack(consumer) is False
    assert not consumer._acked[PURCHASES]  # offset 12 cannot be committed
    assert not skipped.acked
    metrics = consumer.app.segmenter.metrics
    assert metrics.sample("segmenter_untracked_acks_refused_total", topic="purchases") == 1


def test_a_processed_message_is_acked_as_before(consumer: Any) -> None:
    processed = message(3, tracked=True)
    assert processed.ack(consumer) is True
    assert consumer._acked[PURCHASES] == [3]
    assert consumer._new_offset(PURCHASES) == 4  # the offset Faust commits next
