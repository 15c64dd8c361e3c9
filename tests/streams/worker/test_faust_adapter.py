"""The batch consumer path (streams/worker/faust_adapter.py) on a real, never-started Faust
consumer: what gets acked (so committed), when, and what is never delivered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from streams.settings import Settings
from streams.worker import faust_adapter
from streams.worker.app import create_app
from tests.streams.conftest import record

pytestmark = pytest.mark.timeout(30)  # a hung wait_empty is a failure too

P0 = TP("t-purchases", 0)
P1 = TP("t-purchases", 1)


def records(tp: TP, first: int, last: int) -> list[Any]:
    return [
        record(tp.topic, offset, b"{}", partition=tp.partition) for offset in range(first, last + 1)
    ]


class Sink:
    """A batch sink whose commits the test decides: each segment's future stays
    pending until resolved; ``gate`` (when set) holds ``handle`` itself; the
    futures of fetches taken while ``holding`` stand for records held for
    event-time order (``drop_held`` hands them back)."""

    def __init__(self) -> None:
        self.fetches: list[Sequence[tuple[TP, Sequence[Any]]]] = []
        self.futures: list[list[asyncio.Future[bool]]] = []
        self.gate: asyncio.Event | None = None
        self.handling = asyncio.Event()
        self.dropped_after_handled: bool | None = None
        self.holding = False
        self.held: list[asyncio.Future[bool]] = []

    async def handle(self, segments: Any) -> list[asyncio.Future[bool]]:
        self.fetches.append(segments)
        self.handling.set()
        if self.gate is not None:
            await self.gate.wait()
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in segments]
        self.futures.append(futures)
        if self.holding:
            self.held += futures
        return futures

    def drop_held(self) -> int:
        self.dropped_after_handled = len(self.futures) == len(self.fetches)
        held, self.held = [f for f in self.held if not f.done()], []
        for future in held:
            future.set_result(False)
        return len(held)


class Committed:
    """Stands in for the broker: records every offset commit."""

    def __init__(self) -> None:
        self.commits: list[dict[TP, int]] = []

    async def __call__(self, offsets: Any) -> bool:
        self.commits.append(dict(offsets))
        return True


@pytest.fixture
async def sink(consumer: Any) -> Sink:
    consumer.loop = asyncio.get_running_loop()  # (the fixture app was built outside it)
    sink = Sink()
    consumer.app.batch_sink = sink
    consumer.app.topics.acks_enabled_for = lambda topic: True
    return sink


@pytest.fixture
def broker(consumer: Any) -> Committed:
    committed = Committed()
    consumer._commit = committed
    consumer.assignment = lambda: {P0, P1}
    return committed


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def returns(consumer: Any, waiting: asyncio.Future[None], timeout: float = 5.0) -> bool:
    """Whether ``waiting`` (a ``wait_empty``) returns within ``timeout``; stops it if not."""
    done, _ = await asyncio.wait({waiting}, timeout=timeout)
    if not done:
        consumer._stopped.set()  # (its wait ignores cancellation)
        await waiting
    return bool(done)


async def test_a_segment_is_acked_only_once_every_earlier_one_is_committed(
    consumer: Any, sink: Sink
) -> None:
    await consumer._hand_over([(P0, records(P0, 0, 9))])
    await consumer._hand_over([(P0, records(P0, 10, 19)), (P1, records(P1, 0, 4))])
    # The second fetch commits first (the first one's events are held for
    # event-time order, say): nothing of P0 may be committed yet.
    sink.futures[1][0].set_result(True)
    sink.futures[1][1].set_result(True)
    await settle()
    assert consumer._new_offset(P0) is None
    assert consumer._new_offset(P1) == 5  # another partition does not wait
    sink.futures[0][0].set_result(True)
    await settle()
    assert consumer._new_offset(P0) == 20
    assert not consumer._unacked_messages


def test_fausts_own_commit_rule_would_commit_past_an_unacked_prefix(consumer: Any) -> None:
    # Why the adapter acks prefixes only: with no committed offset yet, Faust
    # commits the first run of acked offsets wherever it starts
    # (https://github.com/faust-streaming/faust/issues/312).
    consumer.app.topics.acks_enabled_for = lambda topic: True
    for r in records(P0, 10, 19):
        aiokafka_driver.Consumer.ack(consumer, consumer._to_message(P0, r))
    assert consumer._new_offset(P0) == 20  # offsets 0..9 would be skipped


async def test_a_dropped_segment_blocks_its_partition(consumer: Any, sink: Sink) -> None:
    await consumer._hand_over([(P0, records(P0, 0, 9))])
    await consumer._hand_over([(P0, records(P0, 10, 19))])
    sink.futures[0][0].set_result(False)  # handed back at a stop or a rebalance
    sink.futures[1][0].set_result(True)
    await settle()
    assert consumer._new_offset(P0) is None  # both are read again from the committed offset
    assert not consumer._unacked_messages  # a rebalance does not wait for them


async def test_wait_empty_waits_for_the_batch_in_flight_then_hands_back_held_records(
    consumer: Any, sink: Sink, broker: Committed
) -> None:
    sink.gate = asyncio.Event()
    sink.holding = True
    handing = asyncio.ensure_future(consumer._hand_over([(P0, records(P0, 0, 9))]))
    await sink.handling.wait()
    waiting = asyncio.ensure_future(consumer.wait_empty())
    await settle()
    assert not waiting.done()  # the batch is in flight
    sink.gate.set()
    await handing
    await asyncio.sleep(0.01)
    # The records were held (their future pending): handed back after the batch
    # finished, never acked, and wait_empty returns.
    assert await returns(consumer, waiting)
    assert sink.dropped_after_handled is True
    assert consumer._new_offset(P0) is None
    assert not consumer._unacked_messages


async def test_wait_empty_commits_what_the_batch_in_flight_committed(
    consumer: Any, sink: Sink, broker: Committed
) -> None:
    await consumer._hand_over([(P0, records(P0, 0, 9))])
    waiting = asyncio.ensure_future(consumer.wait_empty())
    await settle()
    sink.futures[0][0].set_result(True)  # the pipeline commits it
    assert await returns(consumer, waiting)
    assert broker.commits[-1] == {P0: 10}


async def test_acks_are_committed_before_revoked_partitions_are_forgotten(
    consumer: Any, sink: Sink, broker: Committed
) -> None:
    app_revoked: list[dict[TP, int]] = []

    async def app_on_revoked(revoked: set[TP]) -> None:  # App._on_partitions_revoked
        app_revoked.append({tp: len(consumer._acked.get(tp, [])) for tp in revoked})

    consumer._on_partitions_revoked = app_on_revoked
    await consumer._hand_over([(P0, records(P0, 0, 9))])
    sink.futures[0][0].set_result(True)
    await settle()
    await consumer.on_partitions_revoked({P0, P1})
    assert {P0: 10} in broker.commits  # committed before Faust dropped the acks
    assert app_revoked == [{P0: 0, P1: 0}]
    assert P0 not in consumer._frontier


async def test_without_the_override_fausts_revoke_loses_the_acks(
    consumer: Any, sink: Sink, broker: Committed
) -> None:
    # Faust's own Consumer.on_partitions_revoked forgets the acks first; the
    # App's revoke callback then has nothing to commit (faust-streaming#502).
    consumer._on_partitions_revoked = lambda revoked: consumer.commit()
    await consumer._hand_over([(P0, records(P0, 0, 9))])
    sink.futures[0][0].set_result(True)
    await settle()
    await aiokafka_driver.Consumer.on_partitions_revoked(consumer, {P0, P1})
    assert broker.commits == []


class Fetches:
    """Stands in for ``Consumer._wait_next_records``: hands out prepared fetches,
    running ``during`` (a coroutine function) while the n-th fetch is under way."""

    def __init__(self, consumer: Any, fetches: list[dict[TP, list[Any]]], during: Any = None):
        self.consumer = consumer
        self.fetches = fetches
        self.during = during or {}
        self.calls = 0
        self.idle = asyncio.Event()

    async def __call__(self, timeout: float) -> tuple[dict[TP, list[Any]], None]:
        if not self.consumer.flow_active:  # as the real one: wait for the flow first
            await self.consumer.can_resume_flow.wait()
        n = self.calls
        self.calls += 1
        if n in self.during:
            await self.during[n]()
        if n < len(self.fetches):
            return self.fetches[n], None
        self.idle.set()
        await asyncio.sleep(3600)
        return {}, None


class Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


async def test_the_batch_in_flight_survives_a_stop_and_is_acked(consumer: Any, sink: Sink) -> None:
    sink.gate = asyncio.Event()
    consumer._wait_next_records = Fetches(consumer, [{P0: records(P0, 0, 9)}])
    draining = asyncio.ensure_future(consumer._drain_messages(Fetcher()))
    await sink.handling.wait()
    draining.cancel()  # App._stop_consumer stops the fetcher first
    await settle()
    assert not draining.done()  # it waits for the batch
    sink.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await draining
    sink.futures[0][0].set_result(True)
    await settle()
    assert consumer._new_offset(P0) == 10  # so the stop's final commit includes it


class Seeks:
    """Stands in for the consumer thread's seeks: records them."""

    def __init__(self, consumer: Any, committed: dict[TP, int | None]) -> None:
        self.committed = committed
        self.rewinds: list[dict[TP, int]] = []
        consumer.seek_to_committed = self.seek_to_committed
        consumer.seek_wait = self.seek_wait

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return dict(self.committed)

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.rewinds.append(dict(partitions))


def delivered(sink: Sink) -> list[list[int]]:
    return [[r.offset for r in recs] for fetch in sink.fetches for _, recs in fetch]


async def drain(consumer: Any, fetches: Fetches) -> None:
    """Run the drain loop until it has taken every prepared fetch."""
    draining = asyncio.ensure_future(consumer._drain_messages(Fetcher()))
    await fetches.idle.wait()
    draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await draining


async def test_records_fetched_before_a_seek_are_fetched_again_from_its_position(
    consumer: Any, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    seeks = Seeks(consumer, {P0: 5})
    fetches = Fetches(
        consumer,
        [{P0: records(P0, 20, 29)}, {P0: records(P0, 5, 9)}],
        during={0: consumer.perform_seek},  # Recovery seeks while a fetch is under way
    )
    consumer._wait_next_records = fetches
    await drain(consumer, fetches)
    # The early records were not taken for a jump past the seek position (a gap
    # Faust would mark done); the partition was put back there and read again.
    assert delivered(sink) == [[5, 6, 7, 8, 9]]
    assert seeks.rewinds == [{P0: 5}]
    assert not consumer._gap[P0]
    assert "not delivered" not in caplog.text


async def test_records_fetched_from_the_seek_position_during_the_seek_are_delivered(
    consumer: Any, sink: Sink
) -> None:
    # aiokafka already read from the new position: dropping these would lose them
    # (its position moved past them).
    seeks = Seeks(consumer, {P0: 5})
    fetches = Fetches(consumer, [{P0: records(P0, 5, 9)}], during={0: consumer.perform_seek})
    consumer._wait_next_records = fetches
    await drain(consumer, fetches)
    assert delivered(sink) == [[5, 6, 7, 8, 9]]
    assert seeks.rewinds == []


async def test_without_a_committed_offset_a_dropped_fetch_is_read_again(
    consumer: Any, sink: Sink
) -> None:
    # A new consumer group: nothing committed, so Faust's seek (aiokafka's
    # seek_to_committed) leaves the position where it is, past the records a
    # stopped flow made the loop drop.
    seeks = Seeks(consumer, {P0: None})

    async def stop_flow_once() -> None:
        consumer.stop_flow()
        asyncio.get_running_loop().call_later(0.05, consumer.resume_flow)

    fetches = Fetches(
        consumer,
        [{P0: records(P0, 0, 9)}, {P0: records(P0, 0, 9)}],
        during={0: stop_flow_once},
    )
    consumer._wait_next_records = fetches
    await drain(consumer, fetches)
    assert seeks.rewinds == [{P0: 0}]
    assert delivered(sink) == [list(range(10))]


async def test_after_held_records_were_handed_back_nothing_is_rewound_past_them(
    consumer: Any, sink: Sink, broker: Committed
) -> None:
    # Records 0..9 of a partition without a committed offset were delivered and
    # held, then handed back at a revoke: the next reader must start at 0, not
    # at the position after them (aiokafka resets it at the new assignment).
    seeks = Seeks(consumer, {P0: None})
    sink.holding = True
    held = consumer._take_in_order(P0, records(P0, 0, 9))  # as the drain loop does
    await consumer._hand_over([(P0, held)])
    assert consumer._next_offset[P0] == 10
    consumer.stop_flow()  # a revoke under way
    assert await returns(consumer, asyncio.ensure_future(consumer.wait_empty()))
    await consumer._rewind({P0: records(P0, 10, 19)}, consumer.app.batch_topics, 0)
    assert seeks.rewinds == []
    assert consumer._new_offset(P0) is None


class Rebalance:
    """Stands in for a rebalance to generation ``to`` while a fetch is under way: the
    flow stops (the revoke), the consumer thread announces the new generation,
    then ``on_partitions_assigned`` runs on the worker's loop (Faust's own part,
    recovery, is left out); Recovery resumes the flow a moment later. What the
    group has committed, and the first offset in the log, as the coordinator
    and the broker would answer."""

    def __init__(
        self,
        consumer: Any,
        to: int,
        committed: dict[TP, int | None],
        monkeypatch: pytest.MonkeyPatch,
        assign: bool = True,
    ) -> None:
        self.consumer, self.to, self.assign = consumer, to, assign
        self.committed = committed
        consumer._committed_offsets = self.committed_offsets
        consumer.earliest_offsets = self.earliest_offsets
        consumer.assignment = lambda: {P0, P1}

        async def faust_part(self: Any, assigned: Any, generation_id: int = 0) -> None:
            pass

        monkeypatch.setattr(aiokafka_driver.Consumer, "on_partitions_assigned", faust_part)

    async def committed_offsets(self, tps: Any) -> dict[TP, int | None]:
        return {tp: self.committed.get(tp) for tp in tps}

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: 0 for tp in tps}

    async def __call__(self) -> None:
        consumer = self.consumer
        consumer.stop_flow()
        consumer.app.consumer_generation_id = self.to
        if self.assign:
            await consumer.on_partitions_assigned({P0, P1}, self.to)
        asyncio.get_running_loop().call_later(0.05, consumer.resume_flow)


async def test_a_fetch_spanning_a_rebalance_is_read_again_from_where_the_generation_starts(
    consumer: Any, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The failing case of the two-worker routing test: a fetch began in generation
    # 1; the rebalance to generation 2 reset the position of a partition without a
    # committed offset to 0, the fetch then read 0..3 (the position moved to 4)
    # and came back while Recovery still held the flow stopped, so the loop did
    # not deliver it. Faust's seek leaves a partition without a committed offset
    # where it is: unless the partition goes back to 0, these 4 events are never
    # read by anyone.
    seeks = Seeks(consumer, {P0: None})
    consumer.app.consumer_generation_id = 1
    fetches = Fetches(
        consumer,
        [{P0: records(P0, 0, 3)}, {P0: records(P0, 0, 3)}],
        during={0: Rebalance(consumer, 2, {P0: None}, monkeypatch)},
    )
    consumer._wait_next_records = fetches
    await drain(consumer, fetches)
    assert seeks.rewinds == [{P0: 0}]
    assert delivered(sink) == [[0, 1, 2, 3]]


async def test_a_fetch_of_the_old_generation_goes_back_to_the_committed_offset_not_to_itself(
    consumer: Any, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Records 20..29 fetched before the rebalance (the old generation read on
    # from the committed 5): the new generation starts at 5, not at 20.
    seeks = Seeks(consumer, {P0: 5})
    consumer.app.consumer_generation_id = 1
    consumer._next_offset[P0] = 30
    fetches = Fetches(
        consumer,
        [{P0: records(P0, 20, 29)}, {P0: records(P0, 5, 9)}],
        during={0: Rebalance(consumer, 2, {P0: 5}, monkeypatch)},
    )
    consumer._wait_next_records = fetches
    await drain(consumer, fetches)
    assert seeks.rewinds == [{P0: 5}]
    assert delivered(sink) == [[5, 6, 7, 8, 9]]


async def test_before_the_assignment_reaches_the_loop_nothing_is_rewound_to_an_old_position(
    consumer: Any, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The consumer thread has announced generation 2, but on_partitions_assigned
    # has not run on the worker's loop yet: the offset expected next (10) is
    # generation 1's; the new generation starts at 0 (nothing committed).
    seeks = Seeks(consumer, {P0: None})
    rebalance = Rebalance(consumer, 2, {P0: None}, monkeypatch, assign=False)
    consumer.app.consumer_generation_id = 1
    consumer._next_offset[P0] = 10
    await rebalance()
    await consumer._rewind({P0: records(P0, 0, 3)}, consumer.app.batch_topics, 2)
    assert seeks.rewinds == [{P0: 0}]


async def test_offsets_a_fetch_skipped_are_a_logged_gap(
    consumer: Any, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    consumer._next_offset[P0] = 10
    skipping = records(P0, 10, 12) + records(P0, 15, 16)  # 13 and 14: transaction markers
    with caplog.at_level(logging.WARNING, logger="streams.worker.faust_adapter"):
        kept = consumer._take_in_order(P0, skipping)
    assert [r.offset for r in kept] == [10, 11, 12, 15, 16]
    assert "offsets 13..14 of t-purchases[0] were not delivered" in caplog.text
    metrics = consumer.app.segmenter.metrics
    assert metrics.sample("segmenter_input_offset_gaps_total", topic="purchases") == 2
    await consumer._hand_over([(P0, kept)])
    sink.futures[0][0].set_result(True)
    await settle()
    assert consumer._new_offset(P0) == 17


async def test_the_seek_runs_with_the_flow_stopped_and_restores_it(consumer: Any) -> None:
    flow_during_seek: list[bool] = []

    async def seek_to_committed() -> dict[TP, int]:
        flow_during_seek.append(consumer.flow_active)
        return {P0: 42, P1: None}

    consumer.seek_to_committed = seek_to_committed
    consumer._next_offset[P1] = 17  # read on: no committed offset to go back to
    consumer.resume_flow()
    await consumer.perform_seek()
    assert flow_during_seek == [False]
    assert consumer.flow_active
    assert consumer._next_offset[P0] == 42 and consumer._committed_offset[P0] == 42
    assert consumer._next_offset[P1] == 17
    consumer.stop_flow()  # a rebalance under way: Faust resumes the flow itself
    await consumer.perform_seek()
    assert not consumer.flow_active


async def test_a_failing_sink_stops_the_worker_and_acks_nothing(consumer: Any) -> None:
    class Broken:
        async def handle(self, segments: Any) -> list[asyncio.Future[bool]]:
            raise RuntimeError("a bug")

        def drop_held(self) -> int:
            return 0

    consumer.app.batch_sink = Broken()
    consumer.app.topics.acks_enabled_for = lambda topic: True
    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    consumer.crash = crash
    with pytest.raises(asyncio.CancelledError):
        await consumer._hand_over([(P0, records(P0, 0, 9))])
    assert [str(e) for e in crashed] == ["a bug"]
    assert consumer._new_offset(P0) is None
    assert not consumer._unacked_messages


def test_another_faust_version_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setattr(faust_adapter, "version", lambda name: "0.16.0")
    with pytest.raises(RuntimeError, match=r"faust-streaming 0\.16\.0 is installed"):
        create_app(Settings(store="memory://", data_dir=tmp_path))


async def test_a_partition_let_go_is_read_at_once_not_after_the_fetch_wait(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiokafka's own fetched_records, waiting for new records of the partitions
    # active when it began; P0's records are fetched already (held for the model).
    from types import SimpleNamespace

    from aiokafka.consumer.fetcher import Fetcher, FetchResult

    fetched = FetchResult.__new__(FetchResult)
    fetched.getall = lambda max_records=None: ["r0", "r1"]  # type: ignore[method-assign]
    fetched.has_more = lambda: False  # type: ignore[method-assign]
    fetcher = Fetcher.__new__(Fetcher)
    fetcher._loop = asyncio.get_running_loop()
    fetcher._fetch_waiters = set()
    fetcher._closed = False
    fetcher._wait_consume_future = None
    fetcher._records = {P0: fetched}
    fetcher._subscriptions = SimpleNamespace(
        reassignment_in_progress=False, is_assigned=lambda tp: True
    )
    thread = consumer._thread
    monkeypatch.setattr(thread, "_consumer", SimpleNamespace(_fetcher=fetcher), raising=False)
    monkeypatch.setattr(thread, "thread_loop", asyncio.get_running_loop())
    active: set[TP] = {P1}  # Faust's live set of active partitions; P0 held
    consumer._active_partitions = active
    consumer._buffered_partitions = {P0}

    waiting = asyncio.ensure_future(fetcher.fetched_records(active, timeout=5.0))
    await settle()
    assert not waiting.done()
    started = asyncio.get_running_loop().time()
    consumer.on_buffer_drop(P0)  # the model arrived: FetchHold lets P0 go
    records = await asyncio.wait_for(waiting, 6.0)
    assert records == {P0: ["r0", "r1"]}
    assert asyncio.get_running_loop().time() - started < 1.0  # not the 5 s wait
