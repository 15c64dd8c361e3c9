"""EventTimeOrder: a partition's events in event-time order whatever the topics' speeds."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from models.ordering import EventTimeOrder

TOPICS = ["purchases", "browsing", "support"]


def never(topic: str, partition: int) -> bool:
    return False


def always(topic: str, partition: int) -> bool:
    return True


@st.composite
def backlogs(draw: st.DrawFn) -> tuple[dict[str, list[int]], list[str]]:
    """Per topic, times in order (one partition); and an arrival interleaving."""
    streams = {topic: sorted(draw(st.lists(st.integers(0, 50), max_size=12))) for topic in TOPICS}
    arrivals = [t for t, times in streams.items() for _ in times]
    return streams, draw(st.permutations(arrivals))


@given(backlogs())
def test_any_arrival_interleaving_gives_event_time_order(
    backlog: tuple[dict[str, list[int]], list[str]],
) -> None:
    streams, arrivals = backlog
    order = EventTimeOrder(TOPICS)
    position = {topic: 0 for topic in TOPICS}
    released: list[tuple[int, int, int]] = []

    def caught_up(topic: str, partition: int) -> bool:
        return position[topic] == len(streams[topic])  # nothing left to read

    for topic in arrivals:
        offset = position[topic]
        ts = streams[topic][offset]
        position[topic] += 1
        order.hold(topic, 0, ts, offset, (ts, TOPICS.index(topic), offset))
        released += order.release(caught_up)
    assert len(order) == 0  # everything read: nothing waits
    assert released == sorted(released)
    assert len(released) == sum(len(times) for times in streams.values())


def test_partitions_do_not_wait_for_each_other() -> None:
    order = EventTimeOrder(TOPICS)
    order.hold("purchases", 0, ts=100, offset=0, item="p0@100")
    order.hold("browsing", 0, ts=5, offset=0, item="b0@5")
    order.hold("browsing", 0, ts=8, offset=1, item="b0@8")
    order.hold("purchases", 1, ts=7, offset=0, item="p1@7")
    # Support has nothing to read. Partition 1 has not seen browsing yet: it
    # waits; on partition 0 browsing goes, and the purchase waits for browsing.
    assert order.release(lambda topic, p: topic == "support") == ["b0@5", "b0@8"]
    assert order.release(lambda topic, p: p == 1) == ["p1@7"]
    assert len(order) == 1  # the purchase at 100 still waits for browsing
    assert order.watermark(0, never) == -math.inf  # support not seen on partition 0
    assert order.watermark(1, always) == math.inf  # nothing held, all caught up


def test_a_topic_keeps_its_offset_order_even_when_its_times_are_not() -> None:
    """A late event in a topic is not overtaken by that topic's later offsets
    (each customer's offset watermark relies on it); other topics may pass it."""
    order = EventTimeOrder(TOPICS)
    order.hold("browsing", 0, ts=50, offset=1, item="b1@50")
    order.hold("browsing", 0, ts=20, offset=2, item="b2@20")
    order.hold("purchases", 0, ts=30, offset=1, item="p1@30")
    assert order.release(always) == ["p1@30", "b1@50", "b2@20"]


def test_ties_go_by_topic_then_offset() -> None:
    order = EventTimeOrder(TOPICS)
    order.hold("support", 0, ts=10, offset=4, item="s4")
    order.hold("browsing", 0, ts=10, offset=8, item="b8")
    order.hold("browsing", 0, ts=10, offset=9, item="b9")
    order.hold("purchases", 0, ts=10, offset=1, item="p1")
    assert order.release(always) == ["p1", "b8", "b9", "s4"]


def test_beyond_max_held_the_oldest_go_first_and_are_counted() -> None:
    order = EventTimeOrder(TOPICS, max_held=2)
    for ts in (30, 10, 20, 40):
        order.hold("purchases", ts % 3, ts=ts, offset=ts, item=ts)
    assert order.release(never) == [10, 20]
    assert len(order) == 2 and order.forced == 2


def test_events_handed_over_after_a_later_one_of_their_partition_are_counted() -> None:
    order = EventTimeOrder(TOPICS)
    order.hold("purchases", 0, ts=30, offset=0, item="p30")
    assert order.release(always) == ["p30"]  # browsing looked caught up
    order.hold("browsing", 0, ts=20, offset=0, item="b20")  # ... but had an older event
    order.hold("browsing", 1, ts=5, offset=0, item="b5")  # another partition: in order
    order.hold("browsing", 0, ts=30, offset=1, item="b30")  # a tie is not out of order
    assert sorted(order.release(always)) == ["b20", "b30", "b5"]
    assert order.late == 1 and order.forced == 0
    order.clear()
    order.hold("purchases", 0, ts=1, offset=1, item="p1")  # a new reader starts afresh
    assert order.release(always) == ["p1"] and order.late == 1


def test_clear_hands_back_every_held_event_and_forgets_the_topics() -> None:
    order = EventTimeOrder(TOPICS)
    order.hold("purchases", 0, ts=30, offset=0, item="a")
    order.hold("browsing", 2, ts=10, offset=0, item="b")
    assert sorted(order.clear()) == ["a", "b"]
    assert len(order) == 0
    order.hold("support", 0, ts=1, offset=0, item="c")
    assert order.release(never) == []  # what was seen before the clear no longer counts
