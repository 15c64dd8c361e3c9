"""Hand a partition's events over in event-time order, whatever topic they came on.

A customer's events arrive on several topics (purchases, browsing, ...) that
the consumer reads at different speeds: in a backlog, one topic can be days of
event time ahead of another on the same partition. Evaluating a customer in
arrival order would then depend on those speeds (a purchase of day 20 seen
before the browsing of day 12). :class:`EventTimeOrder` holds events back
until every input topic of their partition has caught up to them, then hands
them over in ``(ts, topic)`` order, each topic-partition in its own offset
order (a merge of sorted streams), so a backlog is processed in the order it
happened, on one worker or many.

A topic-partition does not hold the others back when it is *caught up* (the
caller says when: nothing left to read, or nothing read for a while). In live
traffic every topic is caught up, so nothing waits. Out of memory's way, at
most ``max_held`` events wait; beyond that the oldest are handed over anyway
(and counted), trading order for progress.

``limit`` (set by the caller before each release) holds back every event at
or past that time whatever the topics say: the cluster model's pace
(:mod:`streams.worker.model_pace`). The ``unpaced`` topics (privacy requests) are
not held for it once their partition has caught up: an erasure must not wait
for a model, and in a quiet stream whose days have gaps the next model only
comes after the patience (the learner closes a day after an event of the
next one). They overtake only events held for the model (those at or past
``limit``), which the privacy gate then judges against the request as it
would any older message (``streams.worker.privacy_gate``).

Pure Python, no Kafka: :mod:`streams.worker.pipeline` supplies the caught-up test.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CaughtUp", "EventTimeOrder"]

CaughtUp = Callable[[str, int], bool]  # (logical topic, partition) -> nothing left to wait for


@dataclass
class EventTimeOrder:
    """Per-partition event-time ordering across the input topics.

    Each topic-partition keeps its own order (offsets are never overtaken
    within a topic: the per-customer offset watermark relies on it); the
    topics of a partition are merged by ``(ts, topic)``, as in a merge of
    sorted streams.

    Parameters
    ----------
    topics
        The logical input topics; ties in ``ts`` are broken in this order.
    max_held
        Most events held at once; beyond it the oldest are released.
    limit
        Events at or past this time are not released (nor counted in the
        watermark) until it moves on; ``max_held`` still applies.
    unpaced
        Topics whose events ``limit`` does not hold back in a caught-up
        partition.

    Examples
    --------
    Purchases run ahead of browsing on partition 0: the purchase at 30 waits
    until browsing has gone past 30 (or has caught up).

    >>> order = EventTimeOrder(["purchases", "browsing"])
    >>> behind = lambda topic, partition: False  # both topics still have a backlog
    >>> order.hold("purchases", 0, ts=30, offset=7, item="p@30")
    >>> order.hold("browsing", 0, ts=10, offset=3, item="b@10")
    >>> order.hold("browsing", 0, ts=20, offset=4, item="b@20")
    >>> order.release(behind)  # browsing's next event may be older than 30
    ['b@10', 'b@20']
    >>> order.hold("browsing", 0, ts=40, offset=5, item="b@40")
    >>> order.release(behind)  # purchases' next may be older than 40
    ['p@30']
    >>> order.release(lambda topic, partition: True)  # all caught up: nothing waits
    ['b@40']
    """

    topics: Sequence[str]
    max_held: int = 50_000
    forced: int = 0  # events released before their turn because max_held was reached
    # events handed over after a later event of their partition (forced, a topic
    # deemed idle or caught up that then brought an older event, or a topic whose
    # producer wrote them out of time order)
    late: int = 0
    limit: float = math.inf
    unpaced: frozenset[str] = frozenset()
    # partition -> topic -> (ts, offset, item) in arrival (offset) order
    _held: dict[int, dict[str, deque[tuple[int, int, Any]]]] = field(default_factory=dict)
    _newest: dict[tuple[str, int], int] = field(default_factory=dict)
    _released: dict[int, int] = field(default_factory=dict)  # partition -> newest ts handed over
    _count: int = 0
    _rank: dict[str, int] = field(init=False, repr=False)  # tie-break order of the topics

    def __post_init__(self) -> None:
        self._rank = {topic: rank for rank, topic in enumerate(self.topics)}

    def __len__(self) -> int:
        return self._count

    def advance(self, topic: str, partition: int, ts: int) -> None:
        """``topic`` has gone past ``ts`` on ``partition`` without an event to hold
        (a progress report of a stream read elsewhere: streams.worker.reroute_merge).

        >>> order = EventTimeOrder(["purchases", "browsing"])
        >>> order.hold("purchases", 0, ts=30, offset=7, item="p@30")
        >>> order.advance("browsing", 0, 40)
        >>> order.release(lambda topic, partition: False)
        ['p@30']
        """
        key = (topic, partition)
        if ts > self._newest.get(key, -math.inf):
            self._newest[key] = ts

    def hold(self, topic: str, partition: int, ts: int, offset: int, item: Any) -> None:
        """Take in one event (it is released by a later :meth:`release`)."""
        key = (topic, partition)
        if ts > self._newest.get(key, -math.inf):
            self._newest[key] = ts
        queues = self._held.setdefault(partition, {})
        queues.setdefault(topic, deque()).append((ts, offset, item))
        self._count += 1

    def _next(self, partition: int, among: Iterable[str] | None = None) -> tuple[float, str] | None:
        """Time and topic of the partition's next event in order (ties: topic
        rank), if any is held; only on the topics ``among``, when given."""
        best: tuple[float, int, str] | None = None
        rank = self._rank
        held = self._held.get(partition, {})
        queues = held.items() if among is None else ((t, held.get(t)) for t in among)
        for topic, queue in queues:
            if queue:
                candidate = (queue[0][0], rank.get(topic, len(rank)), topic)
                if best is None or candidate < best:
                    best = candidate
        return None if best is None else (best[0], best[2])

    def _waiting_for(self, partition: int, caught_up: CaughtUp, floor: float = -math.inf) -> float:
        """Events of ``partition`` older than this cannot be overtaken: the newest
        time seen on every topic with nothing held that is not caught up. (Once
        the bound is at or below ``floor`` the rest is not looked at: nothing
        from ``floor`` on can go.)"""
        bound = math.inf
        queues = self._held.get(partition, {})
        for topic in self.topics:
            if not queues.get(topic):
                bound = min(bound, self._bound_of(topic, partition, caught_up))
                if bound <= floor:
                    break
        return bound

    def _bound_of(self, topic: str, partition: int, caught_up: CaughtUp) -> float:
        if caught_up(topic, partition):
            return math.inf
        return self._newest.get((topic, partition), -math.inf)

    def watermark(self, partition: int, caught_up: CaughtUp) -> float:
        """Every event of ``partition`` older than this has been released."""
        upcoming = self._next(partition)
        first = upcoming[0] if upcoming is not None else math.inf
        return min(first, self._waiting_for(partition, caught_up), self.limit)

    def release(self, caught_up: CaughtUp) -> list[Any]:
        """The events whose turn has come, in order within each partition."""
        out: list[Any] = []
        for partition, queues in self._held.items():
            upcoming = self._next(partition)
            if upcoming is None:
                continue
            bound = min(self._waiting_for(partition, caught_up, floor=upcoming[0]), self.limit)
            while True:
                # Strictly older: a topic that is behind may still bring more
                # events of its newest time.
                if upcoming is None or upcoming[0] >= bound:
                    break
                topic = upcoming[1]
                out.append(self._pop(partition, topic))
                if not queues[topic]:  # nothing held of it now: it bounds the others
                    bound = min(bound, self._bound_of(topic, partition, caught_up))
                upcoming = self._next(partition)
            if upcoming is not None and upcoming[0] >= self.limit and self.unpaced:
                out.extend(self._release_unpaced(partition, caught_up))
        while self._count > self.max_held:
            partition = min(
                (p for p in self._held if self._next(p) is not None),
                key=lambda p: self._next(p),  # type: ignore[arg-type,return-value]
            )
            upcoming = self._next(partition)
            assert upcoming is not None
            out.append(self._pop(partition, upcoming[1]))
            self.forced += 1
        return out

    def _release_unpaced(self, partition: int, caught_up: CaughtUp) -> list[Any]:
        """The unpaced topics' events of a caught-up ``partition`` whose only
        reason to wait is :attr:`limit` (everything older has gone).

        >>> order = EventTimeOrder(["purchases", "privacy"], limit=10,
        ...                        unpaced=frozenset({"privacy"}))
        >>> order.hold("purchases", 0, ts=12, offset=0, item="purchase")
        >>> order.hold("privacy", 0, ts=15, offset=0, item="erase")
        >>> order.release(lambda topic, partition: False)  # a backlog: both wait
        []
        >>> order.release(lambda topic, partition: True)  # caught up: the erasure goes
        ['erase']
        """
        if any(not caught_up(topic, partition) for topic in self.topics):
            return []
        out: list[Any] = []
        # merged in (ts, topic rank) order, as release would
        while (upcoming := self._next(partition, among=self.unpaced)) is not None:
            out.append(self._pop(partition, upcoming[1]))
        return out

    def past_limit(self) -> list[tuple[str, int]]:
        """The (topic, partition)s read up to or past :attr:`limit`: nothing more is
        needed from them before the limit moves on (their reader may pause).

        >>> order = EventTimeOrder(["purchases", "browsing"], limit=10)
        >>> order.hold("purchases", 0, ts=12, offset=0, item="p")
        >>> order.hold("browsing", 0, ts=3, offset=0, item="b")
        >>> order.past_limit()
        [('purchases', 0)]
        """
        return [key for key, ts in self._newest.items() if ts >= self.limit]

    def _pop(self, partition: int, topic: str) -> Any:
        self._count -= 1
        ts, _, item = self._held[partition][topic].popleft()
        newest = self._released.get(partition)
        if newest is None or ts > newest:
            self._released[partition] = ts
        elif ts < newest:
            self.late += 1
        return item

    def clear(self) -> list[Any]:
        """Forget every held event (a rebalance); returns them."""
        items = [
            entry[-1]
            for queues in self._held.values()
            for queue in queues.values()
            for entry in queue
        ]
        self._held.clear()
        self._newest.clear()
        self._released.clear()
        self._count = 0
        return items
