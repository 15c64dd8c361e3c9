"""What this worker reads now: its assigned partitions, the owner of the
learners' partition, and whether an input topic-partition has caught up (for
the event-time order, :mod:`models.ordering`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import faust
from faust.types import TP

from streams.settings import Settings
from streams.topics import INPUT_TOPICS, TRAINING_TOPIC
from streams.worker.faust_adapter import committed_offset

if TYPE_CHECKING:
    from streams.worker.pipeline import Pipeline

__all__ = [
    "IDLE_SECONDS",
    "assigned_inputs",
    "assigned_partitions",
    "caught_up_test",
    "owns_training",
]

IDLE_SECONDS = 5.0  # a topic-partition silent this long no longer holds others back


def caught_up_test(app: faust.App, settings: Settings) -> Any:
    """Whether a topic-partition has nothing left to read, for the event-time order.

    Caught up: every offset below the broker's high watermark has reached the
    pipeline. A topic-partition that delivered nothing for IDLE_SECONDS while
    others did (not fetched yet, or paused) stops holding the others back
    (counted when it then brings older events: segmenter_events_handled_out_of_order).
    """

    def caught_up(topic: str, partition: int) -> bool:
        pipeline: Pipeline = app.pipeline  # type: ignore[attr-defined]
        tp = TP(settings.topic(topic), partition)
        try:
            highwater = app.consumer.highwater(tp)
        except Exception:
            highwater = None
        received = pipeline.received.get((topic, partition))
        if highwater is not None:
            if received is not None:
                position = received[0] + 1
            else:
                position = committed_offset(app.consumer, tp) or 0
            if position >= highwater:
                return True
        last = received[1] if received is not None else pipeline.receiving_since
        # (held back for the cluster model's pace is not silent: streams.worker.model_pace)
        last = pipeline.fetch_hold.silent_since(tp, last)
        return last is not None and time.monotonic() - last > IDLE_SECONDS

    return caught_up


def assigned_inputs(app: faust.App, settings: Settings) -> list[tuple[str, int]]:
    """The input topic-partitions (logical topic, partition) this worker reads now."""
    try:
        assignment = app.consumer.assignment()
    except Exception:
        return []
    names = {settings.topic(name): name for name in INPUT_TOPICS}
    return [(names[tp.topic], tp.partition) for tp in assignment if tp.topic in names]


def owns_training(app: faust.App, settings: Settings) -> bool:
    """Whether this worker owns the training partition (and so runs the learners)."""
    try:
        return TP(settings.topic(TRAINING_TOPIC), 0) in app.consumer.assignment()
    except Exception:
        return False


def assigned_partitions(app: faust.App, topic: str) -> list[int]:
    """Partitions of ``topic`` currently assigned to this worker."""
    try:
        return sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == topic)
    except Exception:
        return []
