"""Keep a worker's event handling within a bounded stream-time lead of the cluster model.

The learner closes one day of stream time after another once every input
partition is past it (``streams.worker.learner``), and publishes the model as of
that day on ``segment-models``. Workers assign each customer with the model
they have installed. In a backlog or a replay a worker reads far faster than
the learner closes days: without a bound it handled day 110 with the model
of day 50 (measured through the broker, issue #17), so which model placed a
customer, and when a split or merge re-placed its customers, depended on
the machine's load. Every cluster move of the model's structural changes
then landed weeks of stream time late.

:class:`ModelPace` says up to which event time a worker may handle events:
the installed model's ``as_of`` plus ``lead`` (two days by default). Events
at or past it wait in the event-time order (``models.ordering``) until the
next model arrives. Two days, not one: the learner closes a day only once
the worker's sweep of the next day is done, which needs an event of that day
handled.

Until the learner's first word (it publishes every day it closes, warm-up
included) the day of the worker's first event stands for the model's, so a
backlog does not race ahead before the learner has spoken. The learner never
blocks a worker for long: the bound applies only while the model moves on;
once no newer model has been heard of for ``patience`` seconds (learner down
or not owned) the worker handles events without waiting, and the bound
returns with the next model. A frozen model (``SEGMENTER_LEARNING=false``)
sets no bound.

Examples
--------
>>> day = 86_400_000
>>> pace = ModelPace(lead_ms=2 * day, patience_s=30.0)
>>> pace.limit(now=0.0)  # no model and no event yet: nothing to wait for
inf
>>> pace.started(9 * day + 5, now=90.0)  # the first event: its day stands for the model's
>>> pace.limit(now=91.0) == 11 * day
True
>>> pace.heard(10 * day, now=100.0)
>>> pace.limit(now=101.0) == 12 * day
True
>>> pace.heard(9 * day, now=102.0)  # an older model (a replayed topic): no progress
>>> pace.limit(now=131.0)  # no newer model for 30 s: the learner is not moving
inf
>>> pace.heard(11 * day, now=140.0)
>>> pace.limit(now=141.0) == 13 * day
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FetchHold", "ModelPace"]


@dataclass
class ModelPace:
    """The event-time bound of one worker (module docs).

    Parameters
    ----------
    lead_ms
        How far past the installed model's ``as_of`` events may be handled;
        ``0`` disables the bound.
    patience_s
        Wall-clock seconds without a newer model after which the bound is
        lifted (it returns with the next newer model).
    """

    lead_ms: int
    patience_s: float = 60.0
    as_of_ms: int | None = None
    advanced_at: float | None = None

    def heard(self, as_of_ms: int, now: float) -> None:
        """A cluster model as of ``as_of_ms`` was installed at ``now`` (monotonic s)."""
        if self.as_of_ms is None or as_of_ms > self.as_of_ms:
            self.as_of_ms = as_of_ms
            self.advanced_at = now

    def started(self, ts_ms: int, now: float) -> None:
        """The worker handled its first event (at ``ts_ms``) before hearing of any
        model: until the learner's first word, the stream's first day stands for
        the model's, so a backlog does not run ahead of the learner from the start."""
        if self.as_of_ms is None and self.lead_ms > 0:
            self.as_of_ms = ts_ms - ts_ms % 86_400_000
            self.advanced_at = now

    def limit(self, now: float) -> float:
        """Events at or past this time (ms) wait for a newer model; ``inf``: none waits."""
        if self.lead_ms <= 0 or self.as_of_ms is None or self.advanced_at is None:
            return math.inf
        if now - self.advanced_at > self.patience_s:
            return math.inf
        return float(self.as_of_ms + self.lead_ms)


@dataclass
class FetchHold:
    """Stop fetching the input partitions read up to the model's limit, and fetch
    them again once it moves on.

    Without it the consumer would go on reading a backlog while the events
    wait for the model, until the event-time order's memory bound releases
    them anyway. Uses Faust's own back-pressure hooks (``on_buffer_full`` /
    ``on_buffer_drop``: records already fetched are still delivered, nothing
    is skipped); a rebalance may fetch a held partition again, and the next
    call holds it back again.
    """

    held: set[Any] = field(default_factory=set)
    # tp -> when (monotonic s) it was last let go: its silence while held is no
    # sign that it has nothing left to read (streams.worker.app's caught-up test)
    resumed: dict[Any, float] = field(default_factory=dict)

    def silent_since(self, tp: Any, last: float | None) -> float | None:
        """When ``tp``'s silence began, not counting the time it was held; ``inf``
        while it is held (a held partition is never idle).

        >>> hold = FetchHold(held={"a"}, resumed={"b": 50.0})
        >>> hold.silent_since("a", 10.0), hold.silent_since("b", 10.0), hold.silent_since("c", 10.0)
        (inf, 50.0, 10.0)
        """
        if tp in self.held:
            return math.inf
        resumed = self.resumed.get(tp)
        if resumed is None or last is None:
            return last if resumed is None else resumed
        return max(last, resumed)

    def update(self, consumer: Any, ahead: Iterable[Any]) -> None:
        """Hold exactly the topic-partitions in ``ahead`` that ``consumer`` is assigned.

        >>> class Consumer:
        ...     def __init__(self): self.active = {"a", "b"}
        ...     def assignment(self): return {"a", "b"}
        ...     def on_buffer_full(self, tp): self.active.discard(tp)
        ...     def on_buffer_drop(self, tp): self.active.add(tp)
        >>> consumer, hold = Consumer(), FetchHold()
        >>> hold.update(consumer, ["a", "z"]); sorted(consumer.active)
        ['b']
        >>> hold.update(consumer, []); sorted(consumer.active)
        ['a', 'b']
        """
        assigned = set(consumer.assignment())
        wanted = set(ahead) & assigned
        for tp in wanted - self.held:
            consumer.on_buffer_full(tp)
        now = time.monotonic()
        for tp in (self.held - wanted) & assigned:  # (revoked ones: the rebalance resets)
            consumer.on_buffer_drop(tp)
            self.resumed[tp] = now
        self.held = wanted
