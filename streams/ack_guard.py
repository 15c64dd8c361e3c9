"""Never commit the offset of a message no stream has processed.

When Faust's stream iterator pulls a message while the flow is suspended (a
worker stop or a rebalance under way) or from an older consumer generation,
it skips the message *and acks it* (faust-streaming 0.15.3,
``Stream._py_aiter``): the skipped offset counts as done. Faust's commit then
takes the first run of consecutive acked offsets, and only refuses a run that
starts more than one offset past the committed one — and not at all while a
partition has no committed offset yet. So a skipped message acked ahead of
messages still in flight (held for their turn in event time, cleared from a
queue by the stop) moved the committed offset past them: they were never
processed and never read again (found by
``tests/integration/fault/test_graceful_stop.py``: one customer's profile
event lost in one run, a whole prefix of several partitions in another).

:func:`install` wraps ``Consumer.ack`` so that a message a stream never took
in (Faust marks every message it hands to a stream as *tracked*) is not
acked. Such a message stays unacked; the partition's next reader (this worker
after a restart, or the new owner after a rebalance) reads it again from the
committed offset. Each refusal is counted
(``segmenter_untracked_acks_refused_total``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from faust.transport.consumer import Consumer

__all__ = ["install"]

log = logging.getLogger(__name__)

_INSTALLED = "_segmenter_ack_guard"


def install() -> None:
    """Patch Faust's consumer once per process (idempotent)."""
    if getattr(Consumer, _INSTALLED, False):
        return
    original_ack = Consumer.ack

    @functools.wraps(original_ack)
    def ack(self: Any, message: Any) -> bool:
        if not message.tracked and not message.acked:
            rt = getattr(self.app, "segmenter", None)  # streams.runtime.Runtime
            if rt is not None:
                topic = rt.settings.logical_topic(message.topic)
                rt.metrics.untracked_ack_refused(topic)
            log.debug(
                "not acking %s[%d]@%d: skipped by the stream, read again from the committed offset",
                message.topic,
                message.partition,
                message.offset,
            )
            return False
        return bool(original_ack(self, message))

    Consumer.ack = ack  # type: ignore[method-assign]
    setattr(Consumer, _INSTALLED, True)
