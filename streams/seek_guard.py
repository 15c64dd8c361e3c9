"""Guard Faust's post-rebalance seek against records fetched before it.

After a rebalance (and after table recovery) faust-streaming 0.15.3 resumes
the input partitions and *then* seeks them to their committed offsets, while
the fetcher is already delivering (``Recovery.on_recovery_completed`` and
``Recovery._resume_streams``). A record fetched before the seek but handed to
the streams after it looks like a jump past the new read offset; Faust takes
the jump for a legitimate gap (compaction, transaction markers), marks the
skipped offsets as done, and the fetch that the seek restarts drops them as
already read. Those messages are never processed and their offsets are
committed: silent loss on the worker that takes partitions over (found by
``tests/integration/fault/test_rebalance.py``: four support messages of one
partition, and with them a customer's resolution time, gone after a handover).

:func:`install` wraps ``Consumer.perform_seek`` so that the seek runs with
the flow stopped: Faust's fetch loop discards the rest of a batch once the
flow is stopped, so no record fetched before the seek is delivered after it.
Records delivered *before* the seek are fetched again from the committed
offset; the pipeline recognises them by the offset stored with each customer
(:func:`streams.pipeline.already_applied`), so this costs a little re-reading
and never a double count.

It also logs and counts (``segmenter_input_offset_gaps_total``) every gap
Faust records on an input topic, so that a skipped offset is never silent.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from faust.transport.consumer import Consumer

__all__ = ["install"]

log = logging.getLogger(__name__)

_INSTALLED = "_segmenter_seek_guard"


def install() -> None:
    """Patch Faust's consumer once per process (idempotent)."""
    if getattr(Consumer, _INSTALLED, False):
        return
    original_seek = Consumer.perform_seek
    original_gap = Consumer._add_gap

    @functools.wraps(original_seek)
    async def perform_seek(self: Any) -> None:
        was_active = self.flow_active
        self.stop_flow()  # the fetch loop drops what it fetched before the seek
        try:
            await original_seek(self)
        finally:
            if was_active:
                self.resume_flow()

    @functools.wraps(original_gap)
    async def add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        if not self._is_changelog_tp(tp) and offset_to > offset_from:
            rt = getattr(self.app, "segmenter", None)  # streams.runtime.Runtime
            if rt is not None:
                topic = rt.settings.logical_topic(tp.topic)
                rt.metrics.offset_gap(topic, offset_to - offset_from)
            log.warning(
                "offsets %d..%d of %s[%d] were not delivered; Faust treats them as a gap",
                offset_from,
                offset_to - 1,
                tp.topic,
                tp.partition,
            )
        await original_gap(self, tp, offset_from, offset_to)

    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]
    Consumer._add_gap = add_gap  # type: ignore[method-assign]
    setattr(Consumer, _INSTALLED, True)
