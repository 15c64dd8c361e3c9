"""A message no stream processed is never acked, so its offset is never committed."""

from __future__ import annotations

from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

PURCHASES = TP("t-purchases", 0)


@pytest.fixture(autouse=True)
def acks_enabled(consumer: Any) -> None:
    # The conductor decides which topics are acked once the app starts.
    consumer.app.topics.acks_enabled_for = lambda topic: True


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
