"""The batch consumer path: whole fetches of the input topics to one handler, inside Faust.

Everything in Segmenter that depends on faust-streaming's private consumer
internals lives in this module, written against **faust-streaming 0.15.3**
(:func:`check_faust_version` refuses any other version at start).

Why: Faust hands every message to a stream through a per-message path
(``Consumer._drain_messages`` → ``wait_first(callback(message), ...)`` → the
conductor → a stream queue → ``take_events``) that costs 100 to 200 µs per
message on our machine — an order of magnitude more than a plain aiokafka loop
(docs/benchmark.md; upstream: https://github.com/robinhood/faust/issues/563).
:class:`BatchConsumer` replaces the drain loop: each fetch's records of the
*input topics* go, raw (aiokafka ``ConsumerRecord``), to one
:class:`BatchSink` call; every other topic (table changelogs during recovery,
the tick and learner agents) keeps Faust's per-message path. Faust still owns
the consumer group, the assignment, table recovery, the commit (with its
producer flush before committing offsets and ``tables.on_commit``), and the web
server. Installed through ``App._new_transport`` (:class:`BatchApp`).

Delivery rules (docs/delivery.md, "The batch consumer path"):

* **Deferred, in-order acks.** The sink returns, for each topic-partition of a
  fetch, a future that resolves ``True`` once every one of its records is
  committed by the pipeline (records held back for event-time order included,
  possibly many fetches later) or ``False`` if one was dropped. A record is
  acked into Faust's own bookkeeping (``_acked``/``_acked_index``/``_n_acked``,
  as ``Consumer.ack`` does) only when it *and every earlier record of its
  topic-partition* is committed: per partition, a queue of the fetched segments
  in offset order, acked from the head. Faust's commit takes the first run of
  consecutive acked offsets and only weakly checks that the run starts at the
  committed offset (a one-offset gap, or no committed offset yet, passes:
  https://github.com/faust-streaming/faust/issues/312,
  https://github.com/faust-streaming/faust/issues/606); acking prefixes only
  makes that check irrelevant. A dropped segment blocks its partition until the
  next rebalance re-reads it from the committed offset.
* **In flight.** Every handed-over segment stands in Faust's
  ``_unacked_messages`` until it is committed or dropped, so
  ``Consumer.wait_empty`` (a rebalance, a stop) waits for it. The sink call is
  shielded: a stop cancels the drain task (``App._stop_fetcher``) but not the
  batch, which finishes and is committed before Faust's final commit.
* **Before Faust waits for acks** (``wait_empty``: every rebalance and stop),
  the batch in flight is waited for, then :meth:`BatchSink.drop_held` hands
  back what cannot be committed soon (events held for event-time order): never
  acked, they are read again from the committed offset by the partition's next
  reader. Nothing of the same consumer generation is delivered after that (the
  flow is stopped; the next delivery follows a seek to the committed offsets).
* **Commit before revoke.** ``Consumer.on_partitions_revoked`` drops the ack
  bookkeeping of the revoked partitions *before* ``App._on_partitions_revoked``
  waits and commits, so acks since the last periodic commit were lost and
  their messages processed again by the next owner
  (https://github.com/faust-streaming/faust/issues/502). Here the flow stops,
  the consumer waits as above and commits first, then Faust's revoke runs.
* **Seeks.** After a rebalance Faust resumes the input partitions and *then*
  seeks them to the committed offsets, while the fetcher may already deliver
  (``Recovery.on_recovery_completed``; https://github.com/faust-streaming/faust/issues/216,
  https://github.com/faust-streaming/faust/issues/221). The seek here runs with
  the flow stopped. A fetch that was under way during a seek (a seek epoch) is
  delivered only if it starts where the seek put the partition; any fetch not
  delivered (that one, or one that came while the flow was stopped) is rewound:
  its partitions are sought back to the offset they owe the pipeline (after a
  rebalance since the fetch began: to where the new generation starts, the
  committed offset or else the log's first, since the fetch may have read on
  past aiokafka's reset at the assignment). So a
  record fetched before the seek cannot look like a jump past the new position
  (which Faust would take for a gap and mark done), and no dropped fetch is
  lost where Faust's seek does not move the position (no committed offset yet).
* **Gaps** (offsets a fetch skipped: transaction markers, retention) are
  recorded in Faust's gap tree exactly as offsets ``[next expected, first
  fetched)``, and logged and counted (``segmenter_input_offset_gaps_total``):
  a skipped input offset is never silent.
* **Generations.** A segment is acked only in the consumer generation it was
  fetched in; a revoke forgets the revoked partitions' queues after committing.

Faust's per-message sensors and stream operators do not apply to the input
topics; ``monitor.stream_inbound_time`` is kept fed for Faust's livelock check.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from importlib.metadata import version
from time import monotonic
from typing import Any, ClassVar, Protocol

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

__all__ = [
    "FAUST_VERSION",
    "BatchApp",
    "BatchConsumer",
    "BatchSink",
    "BatchTransport",
    "Segment",
    "check_faust_version",
    "committed_offset",
    "forget_key",
    "partition_db",
    "partition_owner_url",
    "read_offset",
    "refresh_metadata",
    "remember_key",
    "wake_fetch",
]

log = logging.getLogger(__name__)

#: The faust-streaming version whose consumer internals this module was written against.
FAUST_VERSION = "0.15.3"

#: What a sink receives: one (topic-partition, records in offset order) per fetched partition.
Segments = Sequence[tuple[TP, Sequence[Any]]]


def check_faust_version(installed: str | None = None) -> None:
    """Refuse to run on a faust-streaming this module was not checked against.

    >>> check_faust_version(FAUST_VERSION)
    >>> check_faust_version("0.16.0")
    Traceback (most recent call last):
    ...
    RuntimeError: streams/worker/faust_adapter.py replaces parts of faust-streaming ...
    """
    installed = installed or version("faust-streaming")
    if installed != FAUST_VERSION:
        raise RuntimeError(
            f"streams/worker/faust_adapter.py replaces parts of faust-streaming {FAUST_VERSION}'s "
            f"consumer (Consumer._drain_messages, perform_seek, wait_empty, "
            f"on_partitions_revoked and its ack bookkeeping), but faust-streaming {installed} "
            f"is installed. Check those methods against the new version before changing the pin "
            f"in pyproject.toml."
        )


class BatchSink(Protocol):
    """What the consumer hands the input topics' records to (the pipeline's side)."""

    async def handle(self, segments: Segments) -> Sequence[asyncio.Future[bool]]:
        """Take one fetch's records; return, per segment and in the same order, a future
        that resolves ``True`` once all its records are committed, ``False`` if any was
        dropped. Returning means the next fetch may come (backpressure is the sink's)."""
        ...

    def drop_held(self) -> int:
        """Hand back every record that will not be committed soon (a stop or a rebalance
        is under way); their futures must resolve ``False``. Returns how many."""
        ...


class Segment:
    """One topic-partition's records of one fetch, from hand-over until committed.

    It stands in Faust's ``Consumer._unacked_messages`` (a weak set of messages
    whose ``acked`` Faust reads, and whose ``refcount`` its ``wait_empty`` logs)
    while it is in flight.
    """

    __slots__ = ("__weakref__", "acked", "generation", "ok", "records", "settled", "tp")

    refcount: ClassVar[int] = 1

    def __init__(self, tp: TP, records: Sequence[Any], generation: int) -> None:
        self.tp = tp
        self.records = records
        self.generation = generation
        self.settled = False  # the sink's future resolved
        self.ok = False  # ... to True: every record committed
        self.acked = False  # no longer in flight (Faust's wait_empty reads this)

    def __repr__(self) -> str:
        return (
            f"<Segment {self.tp.topic}[{self.tp.partition}]@"
            f"{self.records[0].offset}..{self.records[-1].offset}>"
        )


class BatchConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer with a batch path for the input topics (module docs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # topic-partition -> segments in offset order, acked from the head
        self._frontier: dict[TP, deque[Segment]] = {}
        # topic-partition -> next offset expected in this seek epoch (None: unknown)
        self._next_offset: dict[TP, int | None] = {}
        self._seek_epoch = 0
        self._in_flight: asyncio.Future[Any] | None = None
        # consumer generation in which held records were handed back (its
        # positions no longer say what the pipeline is owed)
        self._handed_back_in: int | None = None
        # generation whose assignment reset the bookkeeping above (the consumer
        # thread announces a new generation before on_partitions_assigned runs here)
        self._assigned_generation = 0

    # -- configuration (set by BatchApp.register_batch_topics) --------------------------
    @property
    def _batch_app(self) -> BatchApp:
        app = self.app
        assert isinstance(app, BatchApp)
        return app

    # -- the drain loop (replaces Consumer._drain_messages, consumer.py:1170) -----------
    async def _drain_messages(self, fetcher: Any) -> None:
        app = self._batch_app
        batch_topics = app.batch_topics
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        commit_every = self._commit_every
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                epoch = self._seek_epoch
                generation = app.consumer_generation_id
                records, active = await self._wait_next_records(1.0)
                if not records or self.should_stop:
                    await asyncio.sleep(0)
                    continue
                if not self.flow_active:
                    # As Consumer.getmany: nothing fetched while the flow is stopped
                    # is delivered; the position goes back to the committed offsets
                    # (and, for the input topics, to the first record not delivered).
                    await self.perform_seek()
                    await self._rewind(records, batch_topics, generation)
                    continue
                segments, others, rewind = self._sort_fetch(
                    records, active, batch_topics, seeked=self._seek_epoch != epoch
                )
                if rewind:
                    await self._rewind(rewind, batch_topics, generation)
                if segments:
                    await self._hand_over(segments)
                for tp, other in others:
                    await self._deliver_one_by_one(tp, other)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _sort_fetch(
        self, records: Any, active: Any, batch_topics: frozenset[str], seeked: bool
    ) -> tuple[
        list[tuple[TP, Sequence[Any]]], list[tuple[TP, Sequence[Any]]], dict[TP, Sequence[Any]]
    ]:
        """One fetch (aiokafka: tp -> list of records) as the input topics' segments
        to hand over (in offset order, each record once), the other topics'
        records (Faust's per-message path) and records fetched before a seek."""
        segments: list[tuple[TP, Sequence[Any]]] = []
        others: list[tuple[TP, Sequence[Any]]] = []
        rewind: dict[TP, Sequence[Any]] = {}
        buffered = self._buffered_partitions
        for tp, recs in records.items():
            if active is not None and tp not in active and tp not in buffered:
                continue
            if tp.topic not in batch_topics:
                others.append((tp, recs))
            elif seeked and recs[0].offset != self._next_offset.get(tp):
                # A seek ran while this was fetched and these records do not
                # start where it put the partition: fetched before it.
                rewind[tp] = recs
            else:
                kept = self._take_in_order(tp, recs)
                if kept:
                    segments.append((tp, kept))
        return segments, others, rewind

    async def _rewind(self, records: Any, batch_topics: frozenset[str], generation: int) -> None:
        """Make sure the input records of a fetch that is not delivered are fetched
        again: seek each partition to the next offset it owes the pipeline (the
        first of these records when that is not known). Faust's own rewind
        (``perform_seek``) moves only partitions with a committed offset.

        After a rebalance since the fetch began (``generation`` is the one it
        began in), the records may be of either generation: fetched before the
        assignment (aiokafka then reset the position to the committed offset)
        or after it, which moved the position past them. Either way their
        partitions go back to where the current generation starts
        (:meth:`_generation_start`); skipping them lost the records of a
        partition without a committed offset for good.

        Not in a generation whose held records were handed back (the positions
        would skip them; the rebalance that follows resets every position)."""
        current = self.app.consumer_generation_id
        if self._handed_back_in == current:
            return
        inputs = [tp for tp, recs in records.items() if tp.topic in batch_topics and recs]
        if not inputs:
            return
        targets: dict[TP, int] = {}
        try:
            if current == generation and self._assigned_generation == current:
                for tp in inputs:
                    target = self._next_offset.get(tp)
                    targets[tp] = records[tp][0].offset if target is None else target
            else:
                assigned = self.assignment()
                still_ours = [tp for tp in inputs if tp in assigned]
                targets = dict(await self._generation_start(still_ours))
                if targets:
                    log.info(
                        "a fetch begun before rebalance %d was not delivered; read again "
                        "from where the generation starts: %s",
                        current,
                        _offsets(targets, targets),
                    )
            if not targets:
                return
            self._next_offset.update(targets)
            self._seek_epoch += 1
            await self.seek_wait(targets)
        except Exception:  # not assigned any more: the next owner reads from the committed offset
            log.info("could not rewind %s (a rebalance is under way)", _offsets(targets, targets))
        finally:
            if targets:
                self._seek_epoch += 1

    async def _generation_start(self, tps: Sequence[TP]) -> Mapping[TP, int]:
        """Where the current generation reads each of ``tps`` from: its committed
        offset, else the first offset in the log (``consumer_auto_offset_reset``
        is ``earliest``: :func:`streams.worker.app.create_app`)."""
        if not tps:
            return {}
        committed = await self._committed_offsets(tps)
        starts = {tp: offset for tp, offset in committed.items() if offset is not None}
        missing = [tp for tp in tps if tp not in starts]
        if missing:
            starts.update(await self.earliest_offsets(*missing))
        return starts

    async def _committed_offsets(self, tps: Sequence[TP]) -> dict[TP, int | None]:
        """The group's committed offset of each of ``tps`` (None: nothing committed),
        asked of the coordinator (another member may have committed since)."""
        thread = self._thread
        consumer = thread._ensure_consumer()
        return {tp: await thread.call_thread(consumer.committed, tp) for tp in tps}

    def _take_in_order(self, tp: TP, records: Sequence[Any]) -> Sequence[Any]:
        """The records of ``tp`` not delivered yet in this epoch; records gaps."""
        expected = self._next_offset.get(tp)
        if expected is not None and records[0].offset < expected:
            log.warning(
                "records %d..%d of %s[%d] came again below the expected offset %d; skipped",
                records[0].offset,
                records[-1].offset,
                tp.topic,
                tp.partition,
                expected,
            )
            records = [r for r in records if r.offset >= expected]
            if not records:
                return records
        first, last = records[0].offset, records[-1].offset
        if expected is not None and first > expected:
            self._record_gap(tp, expected, first - 1)
        if last - first + 1 != len(records):
            previous = first
            for record in records:
                if record.offset > previous + 1:
                    self._record_gap(tp, previous + 1, record.offset - 1)
                previous = record.offset
        self._next_offset[tp] = last + 1
        self._read_offset[tp] = last
        return records

    def _record_gap(self, tp: TP, first: int, last: int) -> None:
        """Offsets ``first..last`` of an input partition were not delivered: done for
        Faust's commit (as ``Consumer._add_gap``), and never silent."""
        app = self._batch_app
        if app.on_gap is not None:
            app.on_gap(tp.topic, last - first + 1)
        log.warning(
            "offsets %d..%d of %s[%d] were not delivered; Faust treats them as a gap",
            first,
            last,
            tp.topic,
            tp.partition,
        )
        committed = self._committed_offset[tp]
        if committed is not None:
            first = max(first, committed)
        if first <= last:
            gaps = self._gap[tp]
            gaps.addi(first, last + 1)
            gaps.merge_overlaps()

    async def _hand_over(self, batch: list[tuple[TP, Sequence[Any]]]) -> None:
        """Give one fetch's input segments to the sink; the call survives a cancellation."""
        app = self._batch_app
        sink = app.batch_sink
        assert sink is not None
        generation = app.consumer_generation_id
        segments = [Segment(tp, records, generation) for tp, records in batch]
        unacked = self._unacked_messages
        now = monotonic()
        inbound = app.monitor.stream_inbound_time  # Faust's livelock check reads it
        for segment in segments:
            self._frontier.setdefault(segment.tp, deque()).append(segment)
            unacked.add(segment)  # type: ignore[arg-type]
            inbound[segment.tp] = now
        task = asyncio.ensure_future(sink.handle(batch))
        self._in_flight = task
        task.add_done_callback(partial(self._handled, segments))
        cancelled = False
        # Shielded: a stop cancels the drain task (App._stop_fetcher); the batch
        # finishes, so the commit that follows includes it.
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():
                    raise
                cancelled = True
            except Exception:
                break
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("the input batch handler failed; stopping the worker", exc_info=exc)
            await self.crash(exc)  # type: ignore[arg-type]
            raise asyncio.CancelledError()
        if cancelled:
            raise asyncio.CancelledError()

    def _handled(self, segments: list[Segment], task: asyncio.Future[Any]) -> None:
        if self._in_flight is task:
            self._in_flight = None
        if task.cancelled() or task.exception() is not None:
            for segment in segments:
                self._settle(segment, False)
            return
        futures = task.result()
        if len(futures) != len(segments):  # a sink bug: read them again after a restart
            log.error("the sink answered %d of %d segments", len(futures), len(segments))
            for segment in segments:
                self._settle(segment, False)
            return
        for segment, future in zip(segments, futures, strict=True):
            future.add_done_callback(partial(self._committed, segment))

    def _committed(self, segment: Segment, future: asyncio.Future[bool]) -> None:
        ok = not future.cancelled() and future.exception() is None and future.result() is True
        self._settle(segment, ok)

    def _settle(self, segment: Segment, ok: bool) -> None:
        segment.settled, segment.ok, segment.acked = True, ok, True
        self._unacked_messages.discard(segment)  # type: ignore[arg-type]
        if ok:
            self._ack_prefix(segment.tp)
        notify(self._waiting_for_ack)

    def _ack_prefix(self, tp: TP) -> None:
        """Ack, in Faust's bookkeeping, the committed segments at the head of ``tp``'s queue."""
        queue = self._frontier.get(tp)
        generation = self.app.consumer_generation_id
        while queue and queue[0].settled and queue[0].ok:
            segment = queue.popleft()
            if segment.generation == generation:
                self._ack_records(tp, segment.records)

    def _ack_records(self, tp: TP, records: Sequence[Any]) -> int:
        """Bulk ``Consumer.ack`` (consumer.py:825) of ``records`` of ``tp``."""
        if not self.app.topics.acks_enabled_for(tp.topic):
            return 0
        with ack_lock:
            committed = self._committed_offset[tp]
            acked_index = self._acked_index[tp]
            acked = self._acked[tp]
            n = 0
            for record in records:
                offset = record.offset
                if (committed is None or offset >= committed) and offset not in acked_index:
                    acked_index.add(offset)
                    acked.append(offset)
                    n += 1
            self._n_acked += n
        return n

    async def _deliver_one_by_one(self, tp: TP, records: Sequence[Any]) -> None:
        """Faust's own per-message path (Consumer.getmany + _drain_messages) for every
        topic without a batch sink: table changelogs during recovery, other agents."""
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        generation = self.app.consumer_generation_id
        callback = self.callback
        for record in records:
            if not self.flow_active or self.app.consumer_generation_id != generation:
                break
            message = self._to_message(tp, record)
            offset = message.offset
            r_offset = get_read_offset(tp)
            if r_offset is None or offset >= r_offset:
                gap = offset - (r_offset or 0)
                if gap > 1 and r_offset and acks_enabled_for(message.topic):
                    await self._add_gap(tp, r_offset + 1, offset)
                await self.wait_first(callback(message), self.suspend_flow.wait())
                set_read_offset(tp, offset)

    # -- seeks, stops and rebalances --------------------------------------------------------
    async def perform_seek(self) -> None:
        """Seek every partition to its committed offset with the flow stopped (module docs)."""
        was_active = self.flow_active
        self.stop_flow()  # the drain loop delivers nothing fetched before the seek
        self._seek_epoch += 1
        try:
            committed = await self.seek_to_committed()
            positions = {
                tp: offset if offset is not None and offset >= 0 else None
                for tp, offset in committed.items()
            }
            self._read_offset.update(positions)
            # aiokafka moves only partitions with a committed offset above 0
            # (AIOKafkaConsumer.seek_to_committed); the others read on.
            self._next_offset.update(
                {
                    tp: offset
                    for tp, offset in positions.items()
                    if offset is not None and offset > 0
                }
            )
            self._committed_offset.update(
                {tp: offset for tp, offset in positions.items() if offset is not None}
            )
            log.info(
                "seeked to the committed offsets: %s",
                _offsets(positions, self._batch_app.batch_topics),
            )
        finally:
            self._seek_epoch += 1
            if was_active:
                self.resume_flow()

    async def wait_empty(self) -> None:
        """Faust's ``wait_empty`` after the batch in flight finished and held records
        were handed back (they would never be acked otherwise)."""
        task = self._in_flight
        while task is not None and not task.done():
            await asyncio.wait([task])
            task = self._in_flight
        sink = self._batch_app.batch_sink
        if sink is not None:
            handed_back = sink.drop_held()
            if handed_back:
                self._handed_back_in = self.app.consumer_generation_id
                log.info(
                    "%d held input records handed back (read again from the committed offset)",
                    handed_back,
                )
        await super().wait_empty()

    def on_buffer_drop(self, tp: TP) -> None:
        """Fetch ``tp`` again (held back while it waited for the cluster model,
        :class:`streams.worker.model_pace.FetchHold`), at once.

        Its records are usually fetched already; but the fetch under way waits
        for new records of the partitions active when it began, up to the drain
        loop's 1 s timeout (aiokafka ``Fetcher.fetched_records``). Waking its
        waiters ends that wait, and the next look goes through Faust's active
        set, the very set this call just added ``tp`` to.
        """
        super().on_buffer_drop(tp)
        wake_fetch(self._thread)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """A new generation reads from the committed offsets (aiokafka resets every
        position): forget what the previous one delivered."""
        self._frontier.clear()
        self._next_offset.clear()
        self._assigned_generation = generation_id
        await super().on_partitions_assigned(assigned, generation_id)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Commit what is acked before Faust forgets the revoked partitions' acks."""
        if revoked and not self.app.should_stop:
            self.stop_flow()
            log.info(
                "partitions revoked: waiting for %d input segments in flight, then committing",
                len(self._unacked_messages),
            )
            await self.wait_empty()
            # A commit already running when wait_empty committed made it a no-op:
            # commit() waits for the running one; this one takes the last acks.
            await self.commit()
            inputs = {tp for tp in revoked if tp.topic in self._batch_app.batch_topics}
            log.info("committed before the revoke: %s", _offsets(self._committed_offset, inputs))
        await super().on_partitions_revoked(revoked)
        for tp in revoked:
            self._frontier.pop(tp, None)
            self._next_offset.pop(tp, None)


def wake_fetch(thread: Any) -> None:
    """End the wait of a fetch under way on the consumer thread (aiokafka's fetch
    waiters; a woken ``fetched_records`` looks at its buffered records again)."""
    consumer = getattr(thread, "_consumer", None)
    fetcher = getattr(consumer, "_fetcher", None)
    loop = getattr(thread, "thread_loop", None)
    if fetcher is None or loop is None or loop.is_closed():
        return

    def notify_waiters() -> None:
        for waiter in list(fetcher._fetch_waiters):
            fetcher._notify(waiter)

    loop.call_soon_threadsafe(notify_waiters)


def _offsets(offsets: Any, keep: Any) -> str:
    """``topic[partition]=offset`` of the input partitions among ``keep`` (TPs or topic names)."""
    return ", ".join(
        f"{tp.topic}[{tp.partition}]={offset}"
        for tp, offset in sorted(offsets.items())
        if tp in keep or tp.topic in keep
    )


class BatchTransport(aiokafka_driver.Transport):
    """The aiokafka transport with :class:`BatchConsumer`."""

    Consumer = BatchConsumer


class BatchApp(faust.App):
    """A ``faust.App`` whose consumer hands the registered input topics' fetches to a sink."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_faust_version()
        super().__init__(*args, **kwargs)
        self.batch_topics: frozenset[str] = frozenset()
        self.batch_sink: BatchSink | None = None
        # (topic, offsets) -> None: count offsets skipped as a gap (metrics)
        self.on_gap: Callable[[str, int], None] | None = None

    def _new_transport(self) -> Any:  # app/base.py:1932
        return BatchTransport(self.conf.broker_consumer, self)

    def register_batch_topics(self, topics: Sequence[Any], sink: BatchSink) -> None:
        """Consume ``topics`` (Faust topics) through ``sink``: subscription, assignment
        and commits stay Faust's (the conductor knows the topics)."""
        if not self.conf.stream_wait_empty:
            raise RuntimeError(
                "the batch path needs stream_wait_empty=True (its stop and rebalance)"
            )
        names: set[str] = set()
        for topic in topics:
            names.update(topic.topics)
            self.topics.add(topic)
        self.batch_topics = frozenset(names)
        self.batch_sink = sink


# -- the other Faust/aiokafka internals the worker reads ---------------------------------
# Everything below reaches into private attributes of faust-streaming 0.15.3 (or
# aiokafka): kept here, next to the consumer above, so an upgrade is checked in one
# file (ruff's SLF rule is on everywhere else).


def partition_db(store: Any, partition: int) -> Any | None:
    """The RocksDB database of one partition of a table's store, or ``None`` for a
    store without one (``memory://`` in tests keeps every partition in one dict)."""
    if not hasattr(store, "_db_for_partition"):
        return None
    return store._db_for_partition(partition)


def remember_key(store: Any, key: bytes, partition: int) -> None:
    """Tell a RocksDB store which partition holds ``key`` (its ``_key_index``, used
    by Faust's own reads) after writing or reading it directly."""
    store._key_index[key] = partition


def forget_key(store: Any, key: bytes) -> None:
    """Drop ``key`` from a RocksDB store's partition index after deleting it."""
    store._key_index.pop(key, None)


def read_offset(consumer: Any, tp: TP) -> int | None:
    """The offset of the last message the consumer handed to the app on ``tp``."""
    offset: int | None = consumer._read_offset.get(tp)
    return offset


def committed_offset(consumer: Any, tp: TP) -> int | None:
    """The offset Faust last committed on ``tp`` (``None`` before the first)."""
    offset: int | None = consumer._committed_offset.get(tp)
    return offset


def partition_owner_url(app: Any, tp: TP) -> str | None:
    """The web URL of the worker that owns ``tp`` (Faust's router table)."""
    url: str | None = app.assignor._external_tps_url.get(tp)
    return url


async def refresh_metadata(consumer: Any) -> None:
    """Force an aiokafka consumer to fetch cluster metadata now (new topics)."""
    await consumer._client.force_metadata_update()
