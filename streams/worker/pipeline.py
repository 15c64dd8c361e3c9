"""The hot path: a batch of input messages in, outputs and state out.

The consumer (:mod:`streams.worker.faust_adapter`) hands :meth:`Pipeline.submit_many`
the input records of one fetch. Valid events go through the event-time order of
their partition (:mod:`models.ordering`); those whose turn has come are
processed synchronously and in order; the batch's outputs go to the producer at
once; then the commit waits for their acknowledgements, and only then writes
the changed customers (one changelog record and one RocksDB write per customer
per batch, see :mod:`streams.worker.state_table`). The consumer acks the records
after that, so their offsets are committed only once everything they caused is
durable.

A message that cannot be parsed, validated or processed goes to
``dead-letters`` with the reason; the worker never stops on one bad message.
A valid one that is not on its customer's partition is forwarded there
instead (:mod:`streams.worker.repartition`) and comes back on the repartition topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from models import customer, dedup
from models.customer import CustomerState
from models.eventtime import MS_PER_DAY
from models.ordering import CaughtUp, EventTimeOrder
from models.processing import (
    Result,
    churn_training_items,
    learner_key,
    training_samples,
)
from schemas import InvalidEvent, dead_letter, validate
from streams.codec import encode
from streams.topics import CLOCK_TOPIC
from streams.worker.audiences import (
    MEMBERSHIPS_TOPIC,
    membership_records,
    membership_snapshot,
    tombstones,
)
from streams.worker.model_pace import FetchHold
from streams.worker.outbox import Outbox
from streams.worker.pass_review import review_chunk
from streams.worker.privacy_gate import (
    Suppression,
    message_customer,
    named_customers,
    read_suppression,
    rejected_suppression,
    stale_request,
    suppression_of,
)
from streams.worker.repartition import (
    REPARTITION_TOPIC,
    Origin,
    Router,
    to_gate,
)
from streams.worker.reroute_merge import ProgressMark, RerouteMerge
from streams.worker.runtime import Runtime
from streams.worker.state_table import Layer, StateTable
from streams.worker.sweep import PartitionSweep
from streams.worker.tally import Tally
from streams.worker.working_set import WorkingSet

__all__ = ["Batch", "Pipeline", "Submission"]

log = logging.getLogger(__name__)

MAX_QUEUED_COMMITS = 8  # batches processed but not committed, before submit waits
LATENCY_KIND = {"segment-changes": "segment_changes", "churn-risk": "churn_risk"}


@dataclass
class Batch:
    """What one batch has produced and not yet committed."""

    outbox: Outbox
    customers: Layer
    suppressions: Layer
    # Privacy confirmations say "done": they are sent once the state is durable.
    confirmations: Outbox
    # One entry per input message handled in this batch: whose it was.
    submissions: list[Submission] = field(default_factory=list)
    # Handing the outputs to the producer (the commit waits for it first).
    sending: asyncio.Future[None] | None = None
    # The customers this batch touches, decoded once (streams.worker.working_set).
    working: WorkingSet | None = None
    # Per-event counters, added to the metrics once the batch is processed.
    tally: Tally = field(default_factory=Tally)


@dataclass(eq=False)
class Submission:
    """Messages of one topic-partition of a fetch: done once each is committed (or dropped).

    Messages may be held back by the event-time ordering and handled in a
    later batch; the consumer acks them when ``done`` resolves to ``True``,
    and acks nothing when a rebalance or a stop dropped some (``False``: the
    partition's next reader reads them again).
    """

    done: asyncio.Future[bool]
    committed: asyncio.Future[None] | None = None  # the batch its submit processed
    pending: int = 0
    closed: bool = False
    dropped: bool = False

    def settle(self) -> None:
        """One of the messages is committed (or dropped)."""
        self.pending -= 1
        self._resolve()

    def close(self) -> None:
        """Every message of the batch has been counted."""
        self.closed = True
        self._resolve()

    def _resolve(self) -> None:
        if self.closed and self.pending == 0 and not self.done.done():
            self.done.set_result(not self.dropped)


@dataclass
class Pipeline:
    """Bind the runtime to the app's tables and output topics."""

    rt: Runtime
    customers: StateTable  # customer id -> encoded state
    suppressions: StateTable  # erased customer id -> erase time
    outputs: dict[str, Any]  # logical output name -> OutputTopic
    # Event-time order across topics (None: handle messages as they come).
    order: EventTimeOrder | None = None
    # (logical topic, partition) -> nothing left to read there (see streams.worker.app)
    caught_up: CaughtUp = field(default=lambda topic, partition: True)
    # Whether events may be held back now (not while a rebalance is under way).
    may_hold: Callable[[], bool] = field(default=lambda: True)
    # Whether this worker holds a partition's state now (streams.worker.privacy_gate).
    holds: Callable[[int], bool] = field(default=lambda partition: True)
    # Input topic-partitions this worker reads now (logical topic, partition).
    sources: Callable[[], Iterable[tuple[str, int]]] = field(default=lambda: ())
    # A topic-partition silent this long no longer holds others back (streams.worker.app).
    idle_seconds: float = 5.0
    # input partitions not fetched while they wait for the cluster model (streams.worker.model_pace)
    fetch_hold: FetchHold = field(default_factory=FetchHold)
    # Reroutes messages not on their customer's partition (streams.worker.repartition).
    router: Router = field(init=False)
    # Rerouted events in event-time order across source partitions (streams.worker.reroute_merge).
    merge: RerouteMerge = field(init=False)
    # (logical topic, partition) -> offset and monotonic time of the last message received
    received: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)
    receiving_since: float | None = None  # first message since the start or a rebalance
    # Batches waiting to commit, in the order they were processed (group commit).
    _queue: list[tuple[Batch, asyncio.Future[None]]] = field(default_factory=list)
    _committer: asyncio.Future[None] | None = None
    _sending: asyncio.Future[None] | None = None  # the last batch's hand-over to the producer

    def __post_init__(self) -> None:
        settings = self.rt.settings
        self.router = Router(
            settings.partitions, self.rt.metrics.repartitioned, settings.logical_topic
        )
        self.merge = RerouteMerge(settings.logical_topic, idle_seconds=self.idle_seconds)

    # -- entry points -------------------------------------------------------------
    def open_batch(self) -> Batch:
        """Start a batch: outputs and writes collected until :meth:`commit`."""
        return Batch(
            Outbox(self.outputs),
            self.customers.open_layer(),
            self.suppressions.open_layer(),
            Outbox(self.outputs),
            working=WorkingSet(self.customers),
        )

    def close_states(self, batch: Batch) -> None:
        """Encode every customer the batch changed into its layer (once each); count."""
        if batch.working is not None and len(batch.working):
            batch.working.flush(batch.customers)
        batch.tally.flush(self.rt.metrics)

    async def submit(self, topic: str, messages: Sequence[Any]) -> Submission:
        """Take in the messages of one logical input topic (see :meth:`submit_many`)."""
        return (await self.submit_many([(topic, messages)]))[0]

    async def submit_many(self, parts: Sequence[tuple[str, Sequence[Any]]]) -> list[Submission]:
        """Take in one fetch; handle what is due; queue the commit; send the outputs.

        ``parts`` are ``(logical topic, messages)``: in a worker, each is one
        topic-partition's records of one consumer fetch, in offset order
        (aiokafka ``ConsumerRecord``: ``topic``, ``partition``, ``offset``,
        ``key``, ``value``, ``timestamp`` in milliseconds).

        Returns one :class:`Submission` per part: its ``done`` resolves once
        every message of the part is committed (``True``) or was dropped at a
        rebalance or a stop (``False``), when the consumer acks them;
        ``committed`` once the batch this call processed is committed, which
        the consumer waits for before its next fetch (the wait makes batches
        bigger under load).
        Invalid messages are dead-lettered at once. Valid ones go through the
        event-time ordering (:mod:`models.ordering`), so this batch also
        handles earlier events whose turn has come.
        """
        if len(self._queue) >= MAX_QUEUED_COMMITS:
            await self._queue[-1][1]  # the broker is slow: do not run ahead of it
        loop = asyncio.get_running_loop()
        batch = self.open_batch()
        now = time.monotonic()
        if self.receiving_since is None:
            self.receiving_since = now
        order = self.order
        if order is not None and not self.may_hold():
            # Hold nothing more, and hand over what is held first, in order, so
            # no later offset overtakes it.
            self._apply_due(batch, order.release(lambda t, p: True))
            order = None
        submissions = []
        per_topic: dict[str, int] = {}
        for topic, messages in parts:
            submission = Submission(loop.create_future())
            submissions.append(submission)
            for message in messages:
                self.received[(topic, message.partition)] = (message.offset, now)
                submission.pending += 1
                stream: str | None = topic
                if topic == REPARTITION_TOPIC:
                    stream = self.heard(message, now)
                    if stream is None:  # a progress mark, not an event
                        batch.submissions.append(submission)
                        continue
                event = self.parse(topic, message, batch)
                if event is None or order is None:
                    if event is not None:
                        self.apply(topic, message, event, batch)
                    batch.submissions.append(submission)
                    continue
                order.hold(
                    stream or topic,
                    message.partition,
                    event["ts"],
                    message.offset,
                    (topic, message, event, submission),
                )
            submission.close()
            per_topic[topic] = per_topic.get(topic, 0) + len(messages)
        for topic, count in per_topic.items():
            self.rt.metrics.observe_batch(topic, count)
        if self.order is not None:
            read = {(topic, m.partition) for topic, ms in parts if ms for m in ms[:1]}
            self.announce(batch, [source for source in read if source[0] != REPARTITION_TOPIC])
        committed = self._run(batch)
        for submission in submissions:
            submission.committed = committed
        return submissions

    async def release_due(self) -> int:
        """Handle held events whose turn has come without a new message, and announce
        how far this worker has read its source partitions (a timer)."""
        if self.order is None:
            return 0
        batch = self.open_batch()
        self.announce(batch, self.sources())
        self.pace_order()
        due = self.order.release(self.event_time_caught_up) if len(self.order) else []
        if due or len(batch.outbox):
            self._run(batch, due)
        return len(due)

    # -- rerouted events in event-time order (streams.worker.reroute_merge) -------------
    def heard(self, message: Any, now: float) -> str | None:
        """A record of the repartition topic: take in its progress mark (``None``), or
        the stream in the partition's event-time order its forward belongs to."""
        try:
            mark = ProgressMark.of(message)
        except ValueError:  # (not written by a worker: dead-lettered by parse)
            return REPARTITION_TOPIC
        if mark is not None:
            stream, newest = self.merge.heard_mark(message.partition, mark, now)
            if newest is not None and self.order is not None:
                self.order.advance(stream, message.partition, newest)
            return None
        origin = self.router.origin(REPARTITION_TOPIC, message)
        if origin is None or to_gate(message):
            return REPARTITION_TOPIC  # (not an event: dead-lettered, or dropped, by parse)
        topic = self.rt.settings.logical_topic(origin.topic)
        return self.merge.heard_forward(message.partition, topic, origin.partition, now)

    def announce(self, batch: Batch, sources: Iterable[tuple[str, int]]) -> None:
        """Send every repartition partition the progress marks of ``sources`` that
        tell something new, behind the batch's forwards."""
        marks = self.merge.announce(
            sources, self.caught_up, self.rt.settings.topic, time.monotonic()
        )
        for mark in marks:
            value, headers = mark.value(), mark.headers()
            for partition in range(self.router.partitions):
                batch.outbox.add(
                    REPARTITION_TOPIC, None, value, partition=partition, headers=headers
                )

    def pace_order(self) -> None:
        """Hold back events too far past the cluster model's day (streams.worker.model_pace)."""
        if self.order is not None:
            self.order.limit = self.rt.model_pace.limit(time.monotonic())

    def event_time_caught_up(self, topic: str, partition: int) -> bool:
        """:attr:`caught_up`, and for the stream of a rerouted source partition, what
        its progress marks say (:meth:`RerouteMerge.stream_caught_up`)."""
        if "@" not in topic:
            return self.caught_up(topic, partition)
        return self.merge.stream_caught_up(
            topic,
            partition,
            lambda: self.caught_up(REPARTITION_TOPIC, partition),
            self.receiving_since,
            time.monotonic(),
        )

    def _run(self, batch: Batch, due: list[Any] | None = None) -> asyncio.Future[None]:
        """Handle the events whose turn has come, queue the commit, send the outputs.

        Nothing here awaits: the commit takes its place in the queue in the
        order batches are processed. Commits write each customer's newest state
        in queue order, so a batch that overtook this one while it waited (for
        the producer, say) would have its newer state overwritten by this
        batch's older one, and the events in between lost.
        """
        if due is None and self.order is not None:
            self.pace_order()
            due = self.order.release(self.event_time_caught_up)
        self._apply_due(batch, due or [])
        self.close_states(batch)
        # Outputs go to the producer at once, after the previous batch's (a
        # forward must not overtake an earlier one of its source: see
        # streams.worker.repartition); the commit waits for this send before it
        # flushes (and sends again what failed).
        self._hand_over(batch)
        started = time.perf_counter()
        committed = self.enqueue_commit(batch)

        def settle(_: asyncio.Future[None]) -> None:
            self.rt.metrics.observe_commit(time.perf_counter() - started)
            for submission in batch.submissions:
                submission.settle()

        committed.add_done_callback(settle)
        return committed

    def _hand_over(self, batch: Batch) -> None:
        """Start sending ``batch``'s outputs once the previous batch's are handed over."""
        batch.sending = asyncio.ensure_future(self._send_outputs(batch, self._sending))
        self._sending = batch.sending

    @staticmethod
    async def _send_outputs(batch: Batch, previous: asyncio.Future[None] | None) -> None:
        if previous is not None and not previous.done():
            # A send can wait (a full producer buffer, metadata): the records of a
            # later batch would otherwise reach a partition before this one's.
            await asyncio.wait([previous])
        try:
            await batch.outbox.send()
        except Exception:  # the commit sends them again, and retries until it succeeds
            log.warning("could not send a batch's outputs yet; the commit retries", exc_info=True)

    def _apply_due(self, batch: Batch, due: list[Any]) -> None:
        """Apply released ``(topic, message, event, submission)`` items into ``batch``."""
        for topic, message, event, submission in due:
            self.apply(topic, message, event, batch)
            batch.submissions.append(submission)

    def drop_held(self) -> int:
        """Forget the held events (a rebalance or a stop): never acked, they are
        read again from the committed offset by their partition's next reader.
        The consumer delivers nothing more of the same generation afterwards
        (streams/worker/faust_adapter.py), so no later offset can overtake them."""
        if self.order is None:
            return 0
        dropped = self.order.clear()
        if dropped:
            log.info("%d held events dropped (read again from the committed offset)", len(dropped))
        self.received.clear()
        self.receiving_since = None
        self.merge.reset()
        for topic, _, _, submission in dropped:
            self.rt.metrics.requeued(topic)
            submission.dropped = True
            submission.settle()
        return len(dropped)

    def sweep_clock(self, partition: int) -> int:
        """How far the sweep may bring ``partition``'s silent customers.

        The stream clock, but never past an event of the partition that is
        still held back or not read yet, so the sweep does not evaluate a
        customer at a day before their events of that day are in.
        """
        now = self.rt.clock.now_ms
        if self.order is None:
            return now
        self.pace_order()
        watermark = self.order.watermark(partition, self.event_time_caught_up)
        return int(min(now, watermark)) if watermark > 0 else 0

    def training_through(self, partition: int) -> int | None:
        """Every learner sample of ``partition`` up to this time (ms) is in the buffer.

        Event samples come with the events, which are handled in event-time
        order up to :meth:`sweep_clock`; refresh samples of silent customers
        come with the sweep, complete up to the last day it finished
        (``reviewed_through``). The learner closes a period of stream time once
        every partition is past it (``streams.worker.learner``). None before the
        partition's first event.
        """
        clock = self.sweep_clock(partition)
        if clock <= 0:
            return None
        return min(clock - 1, self.rt.reviewed_through(partition) * MS_PER_DAY)

    async def commit(self, batch: Batch) -> None:
        """Send the batch's outputs, wait for the acks, then make its state durable.

        Group commit: batches of all agents that are ready while a commit is
        under way are committed together next, in the order they were
        processed — one round of output acknowledgements and one changelog
        record per customer for the whole group. Retries until it succeeds (for
        example while the broker is down): the batch's messages are not acked
        before, so nothing is lost; outputs sent twice carry the same ``event_id``.
        Its outputs go to the producer now, behind the batches processed before
        (a sweep's change must not reach the topic after the change a later
        ingest batch made from it).
        """
        if batch.sending is None:
            self._hand_over(batch)
        await self.enqueue_commit(batch)

    def enqueue_commit(self, batch: Batch) -> asyncio.Future[None]:
        """Queue ``batch`` for the group commit; the future is done once it is durable."""
        self.close_states(batch)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.ensure_future(self._commit_queued())
        return done

    async def _commit_queued(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            delay = 0.2
            while True:
                try:
                    await self._commit_group([batch for batch, _ in group])
                    break
                except Exception:
                    log.exception(
                        "could not commit %d batches; retrying in %.1f s", len(group), delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            for _, done in group:
                if not done.done():
                    done.set_result(None)

    async def _commit_group(self, batches: list[Batch]) -> None:
        # 1. every output of the group, acknowledged
        outputs = Outbox(self.outputs)
        for batch in batches:
            if batch.sending is not None:
                await batch.sending  # (never raises: what it could not send, flush sends)
            outputs.extend(batch.outbox)
        # ... with each partition's clock, if it moved: committed offsets never run
        # ahead of the published clock, so a worker that restarts (or takes the
        # partition over) without new events still knows how far the stream is.
        clock_records, clocks = self._clock_records()
        flushed, _ = await asyncio.gather(outputs.flush(), clock_records.flush())
        new_day = False
        for partition, clock_ms in clocks.items():
            published = self.rt.clock_published.get(partition, 0)
            self.rt.clock_published[partition] = max(clock_ms, published)
            new_day = new_day or clock_ms // MS_PER_DAY > published // MS_PER_DAY
        if new_day and self.rt.pacing():
            # The model's next day waits for this partition's pass of the new day.
            self.rt.wakeups.clock.set()
        for record in flushed:
            self.rt.metrics.output(record.output)
            if record.latency_kind is not None:
                self.rt.metrics.observe_emit_latency(
                    record.latency_kind, record.kafka_ts_ms, now=record.sent_at
                )
        for batch in batches:
            batch.outbox.clear()
        # 2. the state, changelog first (a customer's newest value only)
        await self.customers.flush(*(batch.customers for batch in batches))
        await self.suppressions.flush(*(batch.suppressions for batch in batches))
        # 3. privacy confirmations, now that erasures are durable
        confirmations = Outbox(self.outputs)
        for batch in batches:
            confirmations.extend(batch.confirmations)
        for record in await confirmations.flush():
            self.rt.metrics.output(record.output)
        for batch in batches:
            batch.confirmations.clear()

    def _clock_records(self) -> tuple[Outbox, dict[int, int]]:
        """The stream-clock records of the partitions whose clock moved, and those clocks."""
        records, clocks = Outbox(self.outputs), {}
        for partition in self.rt.clocks_to_publish():
            message = self.rt.partition_record(partition)
            records.add(CLOCK_TOPIC, f"p{partition}".encode(), encode(message))
            clocks[partition] = message["clock_ms"]
        return records, clocks

    def parse(self, topic: str, message: Any, batch: Batch) -> dict[str, Any] | None:
        """The validated event, or ``None`` after dead-lettering (or dropping) the message,
        or forwarding it to its customer's partition (:mod:`streams.worker.repartition`)."""
        batch.tally.consumed(topic)
        # The privacy path first: an opted-out customer's events are not even
        # read; an erased customer's invalid ones are dropped in reject().
        hidden = suppression_of(
            message_customer(message), message.partition, self.suppressions, _Current(batch)
        )
        if hidden == "opted_out" and topic != "privacy":
            self.rt.metrics.rejected(topic, hidden)
            return None
        try:
            event = validate(
                self.router.source_topic(topic, message),
                message.value,
                now_ms=int(time.time() * 1000),
                max_future_ms=self.rt.settings.max_future_skew_seconds * 1000,
                min_ts_ms=self.rt.settings.min_event_time_ms,
            )
            forwarded = self.router.reroute(topic, message, event["customer_id"], batch.outbox)
            if topic != REPARTITION_TOPIC:
                self.merge.read(topic, message.partition, event["ts"], forwarded)
            if forwarded:
                return None  # acked once the broker has the forward (the batch's outbox)
            return event
        except Exception as exc:  # a poison message must not stop the partition
            self.reject_failed(topic, message, exc, batch, "validation")
        return None

    def apply(self, topic: str, message: Any, event: dict[str, Any], batch: Batch) -> None:
        """Apply one validated event to its customer; dead-letter it if that fails.

        A message of the repartition topic is applied as an event of its source
        topic (:mod:`streams.worker.repartition`)."""
        started = time.perf_counter()
        origin = self.router.origin(topic, message)
        if origin is not None:
            topic = self.router.logical_topic(origin.topic)  # (checked by parse)
        try:
            if topic == "privacy":
                self.on_privacy(event, message, batch)
            else:
                self.on_event(topic, event, message, batch, origin)
        except Exception as exc:  # a poison message must not stop the partition
            self.reject_failed(topic, message, exc, batch, "processing", origin)
        else:
            batch.tally.took(topic, time.perf_counter() - started)

    def reject_failed(
        self,
        topic: str,
        message: Any,
        exc: Exception,
        batch: Batch,
        stage: str,
        origin: Origin | None = None,
    ) -> None:
        """Dead-letter a message whose ``stage`` raised: with its reason when the
        event is invalid, as ``processing_error`` (and logged) when the code failed."""
        if origin is None:
            origin = self.router.origin(topic, message)
            if origin is not None:  # (a rerouted message counts under its source topic)
                topic = self.router.logical_topic(origin.topic)
        if isinstance(exc, InvalidEvent):
            self.reject(topic, message, exc, exc.reason, batch, origin)
            return
        if self.suppressed_message(message, origin, batch) is None:
            log.exception(
                "%s failed for %s[%s]@%s", stage, message.topic, message.partition, message.offset
            )
        self.reject(topic, message, exc, "processing_error", batch, origin)

    # -- behaviour and profile events ------------------------------------------
    def on_event(
        self,
        topic: str,
        event: dict[str, Any],
        message: Any,
        batch: Batch,
        origin: Origin | None = None,
    ) -> None:
        customer_id = event["customer_id"]
        partition = message.partition
        metrics = self.rt.metrics
        suppressed = read_suppression(self.suppressions.get(customer_id, partition))
        if suppressed is not None and suppressed.opted_out_ms is not None:
            metrics.rejected(topic, "opted_out")  # (also after an erasure, which keeps it)
            return
        if suppressed is not None and event["ts"] <= (suppressed.erased_ms or -1):
            # An event from before the customer's erasure (a replay, a late
            # producer): dropped on purpose and not dead-lettered, since the
            # dead-letter topic would keep the personal data we just erased.
            metrics.rejected(topic, "erased")
            return
        working = batch.working if batch.working is not None else WorkingSet(self.customers)
        entry = working.entry(customer_id, partition)
        state = entry.state
        if origin is None:
            if customer.already_applied(state, topic, partition, message.offset):
                # Re-delivered after a crash: the state already holds this message.
                batch.tally.duplicate(topic)
                return
            seen = False
        else:
            # Rerouted: forwarded again or re-delivered after a crash, if its source
            # offset is not above the customer's watermark (confirmed by dedup below).
            seen = customer.source_applied(state, topic, origin.partition, origin.offset)
        old_kpis = state.get("kc") if state is not None else None  # (replaced, never mutated)
        # (recorded before KPI contributions existed: see count_kpis)
        upgraded = state is not None and old_kpis is None and bool(state.get("seg"))
        change = (topic, event, partition, message.offset, origin)
        try:
            result, rejected_attributes = self.apply_change(state, change)
        except Exception:
            # Half-way through: rebuild the state from the batch's start and the
            # events that succeeded (streams.worker.working_set), then dead-letter this one.
            working.restore(entry, self.replay)
            raise
        for reason, count in rejected_attributes.items():
            metrics.profile_attributes_rejected(reason, count)
        if result.status == "duplicate" or (seen and result.status == "late"):
            batch.tally.duplicate(topic)  # (a copy of our own, whatever its age: not late)
            return
        if result.status == "late":
            raise InvalidEvent(
                "late",
                "ts",
                f"ts is more than {self.rt.settings.dedup_window_days:g} days older than this "
                f"customer's newest {topic} event; duplicates that old cannot be recognised",
            )
        if result.status == "opted_out":
            metrics.rejected(topic, "opted_out")
            return
        assert result.state is not None
        entry.state = result.state
        working.touch(entry, change)
        self.rt.due_index.forget(partition, customer_id)  # (its plan is void)
        self.rt.observe_partition_clock(partition, event["ts"])
        if batch.working is None:  # (a batch opened without a working set writes at once)
            working.flush(batch.customers)
        self.count_kpis(customer_id, partition, old_kpis, result.state, batch if upgraded else None)
        self.emit(result, message, batch)
        if result.segment_changes:
            self.rt.count_cluster_changes(partition, result.segment_changes)
        if result.training_vector is not None or result.refresh:
            self.add_training_sample(customer_id, result)
        if result.churn_labels:
            self.rt.training_buffer.extend(churn_training_items(result))
        batch.tally.processed(topic)

    def apply_change(
        self, state: CustomerState | None, change: tuple[Any, ...]
    ) -> tuple[Result, dict[str, int]]:
        """What an event does to its customer's state (and nothing else): the
        processor's result and the profile attributes rejected, by reason.

        A profile event first loses the attributes the policy does not allow;
        the customer's stored ones that are no longer allowed are deleted
        (and put back when the event is not applied after all).
        """
        topic, event, partition, offset, origin = change
        rejected: dict[str, int] = {}
        held_before = None
        if topic == "profiles":
            held = state["f"]["pr"] if state is not None and "f" in state else {}
            screened = self.rt.profile_policy.screen(event["attributes"], held)
            if screened.stale and state is not None:
                held_before = dict(held)
                for name in screened.stale:
                    del held[name]
            rejected = screened.rejected
            event = {**event, "attributes": screened.kept}
        result = self.rt.processor.handle(
            event["customer_id"],
            state,
            topic,
            event,
            self.rt.assigner,
            self.rt.churn_params,
            self.rt.reviewed_through(partition),
        )
        if result.status != "new":
            if held_before is not None and state is not None:
                state["f"]["pr"] = held_before
            return result, rejected
        assert result.state is not None
        if origin is None:
            customer.mark_applied(result.state, topic, partition, offset)
        else:
            customer.mark_source_applied(result.state, topic, origin.partition, origin.offset)
        return result, rejected

    def replay(self, state: CustomerState | None, change: Any) -> CustomerState | None:
        """Apply again a change that succeeded (:meth:`WorkingSet.restore`): the state only."""
        result, _ = self.apply_change(state, change)
        return result.state if result.status == "new" else state

    def add_training_sample(self, customer_id: str, result: Result) -> None:
        self.rt.training_buffer.extend(training_samples(customer_id, result, self.rt.salt()))

    def emit(self, result: Result, message: Any | None, batch: Batch) -> None:
        """Queue the result's output events; count transitions and flaps."""
        metrics = self.rt.metrics
        # (aiokafka records carry the Kafka timestamp in milliseconds)
        kafka_ts_ms = getattr(message, "timestamp", None) if message is not None else None
        for change in result.segment_changes:
            self.send(batch, "segment-changes", change["customer_id"], change, kafka_ts_ms)
            metrics.transition(change["segment_type"], flap=change["segment_type"] in result.flaps)
        for churn in result.churn_events:
            self.send(batch, "churn-risk", churn["customer_id"], churn, kafka_ts_ms)
            metrics.churn_event(churn["level"])
        for key, value in membership_records(result):  # (compacted: the audiences)
            batch.outbox.add(MEMBERSHIPS_TOPIC, key, value)

    def count_kpis(
        self,
        customer_id: str,
        partition: int,
        old: Any,
        state: CustomerState | None,
        batch: Batch | None = None,
    ) -> None:
        """The customer's stored KPI contribution changes (models.kpis).

        A customer recorded before contributions existed (``old`` is None, yet
        in segments) gets their current memberships published (``batch``)."""
        new = state.get("kc") if state is not None else None
        if old is new:
            return
        self.rt.kpis.apply(partition, self.customers.key_bytes(customer_id), old, new)
        if old is None and batch is not None and state is not None and state.get("seg"):
            for key, value in membership_snapshot(customer_id, state):
                batch.outbox.add(MEMBERSHIPS_TOPIC, key, value)

    @staticmethod
    def send(
        batch: Batch,
        output: str,
        key: str | None,
        value: dict[str, Any],
        kafka_ts_ms: float | None = None,
        *,
        confirmation: bool = False,
    ) -> None:
        (batch.confirmations if confirmation else batch.outbox).add(
            output,
            key.encode() if key is not None else None,
            encode(value),
            LATENCY_KIND.get(output),
            kafka_ts_ms,
        )

    # -- privacy ------------------------------------------------------------------
    def on_privacy(self, event: dict[str, Any], message: Any, batch: Batch) -> None:
        customer_id = event["customer_id"]
        partition = message.partition
        action = event["action"]
        self.rt.metrics.privacy_request(action)
        self.rt.due_index.forget(partition, customer_id)
        working = batch.working if batch.working is not None else WorkingSet(self.customers)
        state = working.entry(customer_id, partition).state
        recorded = read_suppression(self.suppressions.get(customer_id, partition))
        suppressed = recorded or Suppression()
        details: dict[str, int] = {}
        # Delivered again (a crash, a second forward) or overtaken by a newer
        # request: carried out already, and what came after it is not its to undo.
        opted_since = customer.opted_out_since(state)
        stale = stale_request(action, event["ts"], suppressed, opted_since)
        status = stale or "done"
        if stale is not None:
            pass  # nothing to carry out: confirmed below, with empty details
        elif action == "opt_out":
            if state is not None and not customer.is_opted_out(state):
                result = self.rt.processor.leave_all_segments(
                    customer_id, state, event["ts"], event["event_id"]
                )
                self.emit(result, message, batch)
                details["segments_left"] = len(result.segment_changes)
                self.send_tombstones(batch, customer_id, state, ("churn",))
            self.count_kpis(
                customer_id, partition, None if state is None else state.get("kc"), None
            )
            details["table_entries_cleared"] = int(state is not None)
            # features dropped; only the flag stays
            working.replace(customer_id, partition, customer.opt_out(state, event["ts"]))
            # Later events are dropped before they are read (streams.worker.privacy_gate).
            suppressed = Suppression(suppressed.erased_ms, opted_out_ms=event["ts"])
            self.forget_training_sample(customer_id, details)
        elif action == "opt_in":
            after = customer.opt_in(state)
            if after is not state:  # an opted-out record's tombstone: profiling starts afresh
                working.replace(customer_id, partition, after)
                details["changelog_tombstones"] = 1
            suppressed = Suppression(suppressed.erased_ms, opted_in_ms=event["ts"])
        elif action == "erase":
            if state is not None:
                self.send_tombstones(batch, customer_id, state)
                self.count_kpis(customer_id, partition, state.get("kc"), None)
                details["dedup_ids"] = dedup.id_count(state.get("dedup", {}))
                working.replace(customer_id, partition, customer.ERASED)  # tombstone
                details["table_entries"] = 1
                details["changelog_tombstones"] = 1
            else:
                status = "not_found"
            # Only the id and the erase time stay (and the consent decision, which
            # an erasure does not undo), so a replay of older events cannot
            # recreate the profile (README, "Privacy").
            suppressed = Suppression(event["ts"], suppressed.opted_out_ms, suppressed.opted_in_ms)
            self.forget_training_sample(customer_id, details)
        if suppressed != (recorded or Suppression()):
            self.suppressions.put(batch.suppressions, customer_id, partition, suppressed.encode())
        if batch.working is None:  # (a batch opened without a working set writes at once)
            working.flush(batch.customers)
        self.send(
            batch,
            "privacy-confirmations",
            customer_id,
            {
                "event_id": f"pc-{event['event_id']}",
                "customer_id": customer_id,
                "action": action,
                "request_event_id": event["event_id"],
                "ts": self.rt.processor.format_ts(event["ts"]),
                "status": status,
                "details": details,
            },
            confirmation=True,
        )
        batch.tally.processed("privacy")

    @staticmethod
    def send_tombstones(
        batch: Batch, customer_id: str, state: CustomerState, only: tuple[str, ...] | None = None
    ) -> None:
        """Take the customer out of every audience on segment-memberships."""
        for key in tombstones(customer_id, state, only):
            batch.outbox.add(MEMBERSHIPS_TOPIC, key, None)

    def forget_training_sample(self, customer_id: str, details: dict[str, int]) -> None:
        """Ask the learner to drop the customer's samples (sent after any queued ones)."""
        self.rt.training_buffer.append({"erase": learner_key(customer_id, self.rt.salt())})
        details["model_erase_requests"] = 1

    # -- rejections -----------------------------------------------------------------
    def suppressed_message(
        self, message: Any, origin: Origin | None = None, batch: Batch | None = None
    ) -> str | None:
        """Whether a message about to be dead-lettered names a suppressed customer
        (of the partitions this worker holds; a batch's working states first)."""
        customers = self.customers if batch is None or batch.working is None else _Current(batch)
        return rejected_suppression(
            message,
            self.suppressions,
            customers,
            self.router.partitions,
            self.holds,
            self.named(message, origin),
        )

    @staticmethod
    def named(message: Any, origin: Origin | None) -> list[str]:
        """The customers a message names (a rerouted one by the key it was produced with)."""
        return named_customers(message.key if origin is None else origin.key, message.value)

    def reject(
        self,
        topic: str,
        message: Any,
        error: Exception,
        reason: str,
        batch: Batch,
        origin: Origin | None = None,
    ) -> None:
        """Dead-letter ``message`` (a rerouted one where it was first produced), unless
        it names a suppressed customer, or one whose partition another worker holds
        (carried there first: :meth:`Router.forward_to_gate`)."""
        metrics = self.rt.metrics
        hidden = self.suppressed_message(message, origin, batch)
        if hidden is not None:
            # An erased or opted-out customer's message: its payload must not
            # outlive the request in dead-letters. Dropped and counted.
            metrics.rejected(topic, hidden)
            return
        if topic != REPARTITION_TOPIC and self.router.forward_to_gate(
            topic, message, origin, self.named(message, origin), self.holds, batch.outbox
        ):
            return  # (acked once the broker has it, like a forward)
        metrics.rejected(topic, reason)
        try:
            record = dead_letter(
                source_topic=message.topic if origin is None else origin.topic,
                partition=message.partition if origin is None else origin.partition,
                offset=message.offset if origin is None else origin.offset,
                key=message.key if origin is None else origin.key,
                raw=message.value,
                error=error,
                now_ms=int(time.time() * 1000),
            )
            self.send(batch, "dead-letters", None, record)
            metrics.dead_letter(topic)
        except Exception:  # never lose the worker because a dead letter cannot be built
            log.exception(
                "could not dead-letter %s[%s]@%s", message.topic, message.partition, message.offset
            )

    # -- timers -----------------------------------------------------------------------
    async def review_partition(
        self, keys: list[str], partition: int, sweep: PartitionSweep, chunk: int = 100
    ) -> int:
        """Bring silent customers up to the sweep's day; gather statistics.

        Works ``chunk`` customers at a time, each chunk a batch of its own, so
        ingest batches run in between and their latency stays low.
        """
        changed = 0
        for start in range(0, len(keys), chunk):
            batch = self.open_batch()
            changed += review_chunk(self, keys[start : start + chunk], partition, sweep, batch)
            await self.commit(batch)
        return changed

    async def drain(self) -> None:
        """Wait until every batch processed so far is committed (in the store)."""
        while self._committer is not None and not self._committer.done():
            await asyncio.shield(self._committer)


class _Current:
    """The customers table as a batch sees it: its working states first
    (``get`` like :meth:`StateTable.get`, for the privacy checks)."""

    __slots__ = ("batch",)

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def get(self, customer_id: str, partition: int) -> bytes | None:
        working = self.batch.working
        assert working is not None
        return working.raw(customer_id, partition)
