"""Rerouted events in event-time order: how far each source partition has been read.

A message off its customer's partition reaches the customer's partition ``r``
through the repartition topic (:mod:`streams.worker.repartition`). Forwards from one
source topic-partition arrive at ``r`` in that partition's order, but
forwards from *different* source partitions arrive in the order the workers
read them: in a backlog of an unkeyed producer, one worker may forward day 20
of a customer from source partition 0 before another has read day 5 from
source partition 2. Applying in arrival order would evaluate the customer out
of order, and dead-letter as ``late`` an event more than the dedup window
older than one already applied (26 of 130 purchases of one backlog test).

So each rerouted source partition is a stream of its own in ``r``'s
event-time order (:class:`~models.ordering.EventTimeOrder`), merged with the
others and with ``r``'s own input topics, and the worker reading a source
partition says how far it has read it: after it reads a fetch, it sends every
partition of the repartition topic a *progress mark* (:class:`ProgressMark`:
the newest event time read from that source partition, whether it has read
everything there is, and whether it forwards anything at all), after the
fetch's forwards. A mark is in-band, behind the forwards it covers (the
producer keeps a partition's order, and batches are handed to it in order), so
when ``r`` holds a mark saying source ``s`` has read up to ``t``, every
forward of ``s`` older than ``t`` has reached ``r`` before it. ``r`` then
releases an event once every stream that may still bring an older one has
gone past it (:meth:`RerouteMerge.stream_caught_up`): Flink's watermarks across
a shuffle, with one watermark per source partition.

Marks are sent only when they tell something new: the first time a source
partition is read after an assignment (or found to have nothing to read),
when its ``caught_up`` or ``forwarding`` flag changes, and, while a
forwarding source partition is behind, at most every ``mark_interval``
seconds as its newest time advances. A source partition that forwards nothing
(its producer keys by ``customer_id`` with the Java client's partitioner)
holds nothing back. Marks are not events: they are never validated, counted
or applied.

What a stream of ``r`` waits for, as the input topics do (``streams.worker.app``):

* a source partition not heard from since ``r``'s reader started waits for
  its first mark for up to ``idle_seconds``;
* one that forwards and is behind bounds ``r`` by the newest time it has
  reported (a mark) or forwarded;
* one whose latest mark says it has read everything bounds nothing once
  ``r``'s reader has read the repartition partition to its end; nor does one
  silent for ``idle_seconds`` (its reader is stuck or gone: order is traded
  for progress, as for an idle input topic).

Pure logic; :mod:`streams.worker.pipeline` feeds it and sends the marks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas import INPUT_TOPICS

__all__ = [
    "MARK_HEADER",
    "ProgressMark",
    "RerouteMerge",
    "event_time_topics",
    "stream_name",
]

#: Header naming the source topic-partition a progress mark is about.
MARK_HEADER = "segmenter-progress"  # b"<full topic>:<partition>"


def stream_name(topic: str, partition: int) -> str:
    """The name, in a partition's event-time order, of events rerouted from the
    logical ``topic``'s source ``partition``.

    >>> stream_name("purchases", 2)
    'purchases@2'
    """
    return f"{topic}@{partition}"


def event_time_topics(partitions: int) -> list[str]:
    """What a partition's event-time order merges: its input topics, then one stream
    per source topic-partition whose messages may be rerouted to it.

    >>> event_time_topics(2)[:len(INPUT_TOPICS)] == list(INPUT_TOPICS)
    True
    >>> event_time_topics(2)[len(INPUT_TOPICS):len(INPUT_TOPICS) + 2]
    ['purchases@0', 'purchases@1']
    """
    return [
        *INPUT_TOPICS,
        *(stream_name(topic, p) for topic in INPUT_TOPICS for p in range(partitions)),
    ]


@dataclass(frozen=True)
class ProgressMark:
    """How far the worker reading one source topic-partition has read it.

    Examples
    --------
    >>> from types import SimpleNamespace as Message
    >>> mark = ProgressMark("t-purchases", 2, newest=1700, caught_up=False, forwarding=True)
    >>> mark.headers()
    [('segmenter-progress', b't-purchases:2')]
    >>> ProgressMark.of(Message(headers=mark.headers(), value=mark.value())) == mark
    True
    >>> ProgressMark.of(Message(headers=[("segmenter-source", b"t-purchases:2:7")], value=b"{}"))
    """

    topic: str  # full name of the source topic
    partition: int
    newest: int | None  # newest event time read (None: nothing read)
    caught_up: bool  # nothing left to read when it was sent
    forwarding: bool  # has forwarded something since its reader was assigned it

    def headers(self) -> list[tuple[str, bytes]]:
        return [(MARK_HEADER, f"{self.topic}:{self.partition}".encode())]

    def value(self) -> bytes:
        return orjson.dumps(
            {"newest": self.newest, "caught_up": self.caught_up, "forwarding": self.forwarding}
        )

    @classmethod
    def of(cls, message: Any) -> ProgressMark | None:
        """The mark a repartition-topic record carries; ``None`` for a forward.

        Raises ``ValueError`` for a record with the header that is not a mark.
        """
        headers = message.headers
        if not headers:
            return None
        for name, raw in headers.items() if isinstance(headers, dict) else headers:
            if name == MARK_HEADER:
                try:
                    topic, partition = bytes(raw).decode().rsplit(":", 1)
                    value = orjson.loads(message.value)
                    newest = value["newest"]
                    if newest is not None and not isinstance(newest, int):
                        raise TypeError(newest)
                    return cls(
                        topic,
                        int(partition),
                        newest,
                        bool(value["caught_up"]),
                        bool(value["forwarding"]),
                    )
                except (ValueError, TypeError, KeyError) as error:
                    raise ValueError(f"not a progress mark: {error!r}") from None
        return None


@dataclass
class _Reading:
    """A source topic-partition this worker reads (the sender's side)."""

    newest: int | None = None
    forwarding: bool = False
    sent: tuple[int | None, bool, bool] | None = None  # (newest, caught_up, forwarding)
    sent_at: float = -math.inf


@dataclass
class _Heard:
    """What a partition of the repartition topic knows of one source topic-partition."""

    caught_up: bool = False
    forwarding: bool = False
    at: float = 0.0  # monotonic time of the last mark or forward


@dataclass
class RerouteMerge:
    """Both sides of the merge: progress of the source partitions this worker reads
    (to announce), and what each repartition partition it reads has heard.

    Parameters
    ----------
    logical_topic
        The logical name of a full topic name.
    mark_interval
        Least seconds between two marks of a source partition that is behind.
    idle_seconds
        A stream not heard from for this long holds nothing back.

    Examples
    --------
    A worker reads source ``purchases[0]`` (behind) and forwards from it:

    >>> merge = RerouteMerge()
    >>> merge.read("purchases", 0, ts=500, forwarded=True)
    >>> [mark] = merge.announce([("purchases", 0)], lambda t, p: False, str, now=1.0)
    >>> mark
    ProgressMark(topic='purchases', partition=0, newest=500, caught_up=False, forwarding=True)
    >>> merge.announce([("purchases", 0)], lambda t, p: False, str, now=1.1)  # nothing new
    []

    Repartition partition 1 hears it: ``purchases@0`` holds back events from 500 on.

    >>> stream, newest = merge.heard_mark(1, mark, now=1.2)
    >>> stream, newest
    ('purchases@0', 500)
    >>> merge.stream_caught_up(stream, 1, lambda: True, receiving_since=1.0, now=1.3)
    False
    """

    logical_topic: Callable[[str], str] = lambda name: name
    mark_interval: float = 0.25
    idle_seconds: float = 5.0
    _reading: dict[tuple[str, int], _Reading] = field(default_factory=dict)
    _heard: dict[tuple[int, str], _Heard] = field(default_factory=dict)
    _streams: dict[tuple[str, int], str] = field(default_factory=dict)

    # -- the sender: source partitions this worker reads -------------------------
    def read(self, topic: str, partition: int, ts: int, forwarded: bool) -> None:
        """A valid event of the logical ``topic``'s ``partition`` was read (and forwarded)."""
        reading = self._reading.get((topic, partition))
        if reading is None:
            reading = self._reading[(topic, partition)] = _Reading()
        if reading.newest is None or ts > reading.newest:
            reading.newest = ts
        if forwarded:
            reading.forwarding = True

    def announce(
        self,
        sources: Iterable[tuple[str, int]],
        caught_up: Callable[[str, int], bool],
        full_topic: Callable[[str], str],
        now: float,
    ) -> list[ProgressMark]:
        """Marks to send (each to every repartition partition) for ``sources``
        (logical topic, partition), by what changed since the last ones.

        A source never read since the assignment is announced only once it is
        caught up (it forwards nothing then); one that is behind waits for its
        first fetch, which says whether it forwards.
        """
        marks = []
        for topic, partition in sources:
            reading = self._reading.get((topic, partition))
            done = caught_up(topic, partition)
            if reading is None:
                if not done:
                    continue
                reading = self._reading[(topic, partition)] = _Reading()
            state = (reading.newest, done, reading.forwarding)
            sent = reading.sent
            # When only the newest time moved, it matters while a forwarding source
            # is behind, and then at most every mark_interval. (No heartbeat: a
            # source that stops moving is silent, and after idle_seconds holds
            # nothing back, like an input topic-partition.)
            if sent is not None and (
                state == sent
                or (
                    sent[1:] == state[1:]
                    and (
                        not reading.forwarding or done or now - reading.sent_at < self.mark_interval
                    )
                )
            ):
                continue
            reading.sent, reading.sent_at = state, now
            marks.append(ProgressMark(full_topic(topic), partition, *state))
        return marks

    # -- the receiver: partitions of the repartition topic this worker reads -------
    def stream(self, topic: str, partition: int) -> str:
        """:func:`stream_name`, remembered."""
        name = self._streams.get((topic, partition))
        if name is None:
            name = self._streams[(topic, partition)] = stream_name(topic, partition)
        return name

    def heard_mark(self, partition: int, mark: ProgressMark, now: float) -> tuple[str, int | None]:
        """Repartition ``partition`` read ``mark``: its stream, and how far it has gone."""
        stream = self.stream(self.logical_topic(mark.topic), mark.partition)
        heard = self._heard.get((partition, stream))
        if heard is None:
            heard = self._heard[(partition, stream)] = _Heard()
        heard.caught_up, heard.forwarding, heard.at = mark.caught_up, mark.forwarding, now
        return stream, mark.newest

    def heard_forward(self, partition: int, topic: str, source: int, now: float) -> str:
        """Repartition ``partition`` read a forward from the logical ``topic``'s
        ``source`` partition: its stream (which forwards, obviously)."""
        stream = self.stream(topic, source)
        heard = self._heard.get((partition, stream))
        if heard is None:
            heard = self._heard[(partition, stream)] = _Heard()
        heard.forwarding, heard.at = True, now
        return stream

    def stream_caught_up(
        self,
        stream: str,
        partition: int,
        repartition_caught_up: Callable[[], bool],
        receiving_since: float | None,
        now: float,
    ) -> bool:
        """Whether ``stream`` holds nothing back on repartition ``partition`` (else
        it bounds it by the newest time it reported or forwarded)."""
        heard = self._heard.get((partition, stream))
        if heard is None:  # not heard from since this reader started: wait a while
            return receiving_since is not None and now - receiving_since > self.idle_seconds
        if not heard.forwarding or now - heard.at > self.idle_seconds:
            return True
        return heard.caught_up and repartition_caught_up()

    def reset(self) -> None:
        """Forget both sides (a rebalance: every reader starts again, and announces again)."""
        self._reading.clear()
        self._heard.clear()
