"""The post-rebalance seek runs with the flow stopped, and gaps are never silent."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from faust.types import TP

PURCHASES = TP("t-purchases", 0)


def test_seek_runs_with_the_flow_stopped_and_restores_it(consumer: Any) -> None:
    flow_during_seek: list[bool] = []

    async def seek_to_committed() -> dict[TP, int]:
        flow_during_seek.append(consumer.flow_active)
        return {PURCHASES: 42}

    consumer.seek_to_committed = seek_to_committed
    consumer.resume_flow()
    asyncio.run(consumer.perform_seek())

    # No record fetched before the seek can be delivered while it runs ...
    assert flow_during_seek == [False]
    # ... and afterwards the stream reads on from the committed offset.
    assert consumer.flow_active
    assert consumer._read_offset[PURCHASES] == 42


def test_seek_leaves_a_stopped_flow_stopped(consumer: Any) -> None:
    async def seek_to_committed() -> dict[TP, int]:
        return {PURCHASES: 7}

    consumer.seek_to_committed = seek_to_committed
    consumer.stop_flow()  # a rebalance is under way: Faust resumes the flow itself
    asyncio.run(consumer.perform_seek())
    assert not consumer.flow_active


def test_a_gap_on_an_input_topic_is_logged(consumer: Any, caplog: pytest.LogCaptureFixture) -> None:
    consumer._committed_offset[PURCHASES] = 9
    with caplog.at_level(logging.WARNING, logger="streams.seek_guard"):
        asyncio.run(consumer._add_gap(PURCHASES, 10, 14))
    assert "offsets 10..13 of t-purchases[0] were not delivered" in caplog.text
    assert consumer._gap[PURCHASES]  # Faust's own bookkeeping still happens
    metrics = consumer.app.segmenter.metrics
    assert metrics.sample("segmenter_input_offset_gaps_total", topic="purchases") == 4
