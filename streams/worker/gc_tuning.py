"""The cyclic garbage collector, set for a long-running stream worker.

Nearly everything the hot path allocates is freed by reference counting the
moment it is dropped; the cyclic collector only has to find the rare cycles.
With CPython's default thresholds (a young collection every 700 net
allocations) it ran about every 50 events and traversed the customer states
a batch keeps in its working set (:mod:`streams.worker.working_set`): measured
in-process (``python -m streams.tools.hotpath``), 6 to 10 µs per event. So:

* everything alive once the worker is built (river, scipy, sklearn: about a
  million objects) is frozen out of every collection (``gc.freeze``), as it
  lives as long as the worker;
* young collections run every :data:`YOUNG_THRESHOLD` net allocations, and
  older generations keep CPython's ratios.

Memory stays bounded: cycles are still collected, a few thousand
allocations later.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle_heap"]

YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Collect once, freeze what survives, and space out later collections."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
