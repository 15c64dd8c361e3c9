"""The hot path: a batch of input messages in, outputs and state out.

Each input agent hands :meth:`Pipeline.on_batch` the messages of one
``stream.take_events`` batch. Processing is synchronous and in order; the
batch's outputs go to the producer at once; then :meth:`Pipeline.commit`
waits for their acknowledgements, and only then writes the changed customers (one changelog
record and one RocksDB write per customer per batch, see
:mod:`streams.state_table`). Faust acks the messages after that, so their
offsets are committed only once everything they caused is durable.

A message that cannot be parsed, validated or processed goes to
``dead-letters`` with the reason; the worker never stops on one bad message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from models import dedup
from schemas import InvalidEvent, dead_letter, validate
from streams.codec import decode_state, encode
from streams.outbox import Outbox
from streams.processing import Result, learner_key, new_customer_state, training_sample
from streams.runtime import Runtime
from streams.state_table import Layer, StateTable
from streams.sweep import PartitionSweep

__all__ = ["Batch", "Pipeline"]

log = logging.getLogger(__name__)

LATENCY_KIND = {"segment-changes": "segment_changes", "churn-risk": "churn_risk"}


@dataclass
class Batch:
    """What one batch has produced and not yet committed."""

    outbox: Outbox
    customers: Layer
    suppressions: Layer
    # Privacy confirmations say "done": they are sent once the state is durable.
    confirmations: Outbox


@dataclass
class Pipeline:
    """Bind the runtime to the app's tables and output topics."""

    rt: Runtime
    customers: StateTable  # customer id -> encoded state
    suppressions: StateTable  # erased customer id -> erase time
    outputs: dict[str, Any]  # logical output name -> OutputTopic
    # Batches waiting to commit, in the order they were processed (group commit).
    _queue: list[tuple[Batch, asyncio.Future[None]]] = field(default_factory=list)
    _committer: asyncio.Future[None] | None = None

    # -- entry points -------------------------------------------------------------
    def open_batch(self) -> Batch:
        """Start a batch: outputs and writes collected until :meth:`commit`."""
        return Batch(
            Outbox(self.outputs),
            self.customers.open_layer(),
            self.suppressions.open_layer(),
            Outbox(self.outputs),
        )

    async def on_batch(self, topic: str, messages: list[Any]) -> None:
        """Process the messages of the logical input ``topic`` and commit them."""
        await (await self.submit(topic, messages))

    async def submit(self, topic: str, messages: list[Any]) -> asyncio.Future[None]:
        """Process the messages, send their outputs, and queue the batch's commit.

        Returns the future of the commit: the caller acks the messages when it
        is done, and may process its next batch meanwhile. The outputs are
        handed to the producer before returning, so downstream consumers get
        them without waiting for the commits queued before this one.
        """
        batch = self.open_batch()
        for message in messages:
            self.process(topic, message, batch)
        try:
            await batch.outbox.send()
        except Exception:  # the commit sends them again, and retries until it succeeds
            log.warning("could not send a batch's outputs yet; the commit retries", exc_info=True)
        started = time.perf_counter()
        committed = self.enqueue_commit(batch)

        def observe(_: asyncio.Future[None]) -> None:
            self.rt.metrics.observe_batch(topic, len(messages), time.perf_counter() - started)

        committed.add_done_callback(observe)
        return committed

    async def on_message(self, topic: str, message: Any) -> None:
        """Process one message (a batch of one)."""
        await self.on_batch(topic, [message])

    async def commit(self, batch: Batch) -> None:
        """Send the batch's outputs, wait for the acks, then make its state durable.

        Group commit: batches of all agents that are ready while a commit is
        under way are committed together next, in the order they were
        processed — one round of output acknowledgements and one changelog
        record per customer for the whole group. Retries until it succeeds (for
        example while the broker is down): the batch's messages are not acked
        before, so nothing is lost; outputs sent twice carry the same ``event_id``.
        """
        await self.enqueue_commit(batch)

    def enqueue_commit(self, batch: Batch) -> asyncio.Future[None]:
        """Queue ``batch`` for the group commit; the future is done once it is durable."""
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
            outputs.extend(batch.outbox)
        for record in await outputs.flush():
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

    def process(self, topic: str, message: Any, batch: Batch) -> None:
        """Process one Kafka message of the logical input ``topic`` into ``batch``."""
        metrics = self.rt.metrics
        started = time.perf_counter()
        metrics.consumed(topic)
        try:
            event = validate(
                topic,
                message.value,
                now_ms=int(time.time() * 1000),
                max_future_ms=self.rt.settings.max_future_skew_seconds * 1000,
            )
            key = message.key.decode("utf-8", "replace") if message.key is not None else None
            if key != event["customer_id"]:
                raise InvalidEvent(
                    "key_mismatch",
                    "customer_id",
                    f"message key {key!r} differs from customer_id; produce with key = customer_id",
                )
            if topic == "privacy":
                self.on_privacy(event, message, batch)
            else:
                self.on_event(topic, event, message, batch)
        except InvalidEvent as err:
            self.reject(topic, message, err, err.reason, batch)
        except Exception as exc:  # a poison message must not stop the partition
            log.exception(
                "processing failed for %s[%s]@%s", message.topic, message.partition, message.offset
            )
            self.reject(topic, message, exc, "processing_error", batch)
        else:
            metrics.observe_processing(topic, time.perf_counter() - started)

    # -- behaviour and profile events ------------------------------------------
    def on_event(self, topic: str, event: dict[str, Any], message: Any, batch: Batch) -> None:
        customer_id = event["customer_id"]
        partition = message.partition
        metrics = self.rt.metrics
        erased_at = self.suppressions.get(customer_id, partition)
        if erased_at is not None and event["ts"] <= int(erased_at):
            # An event from before the customer's erasure (a replay, a late
            # producer): dropped on purpose and not dead-lettered, since the
            # dead-letter topic would keep the personal data we just erased.
            metrics.rejected(topic, "erased")
            return
        state = decode_state(self.customers.get(customer_id, partition))
        if already_applied(state, topic, partition, message.offset):
            # Re-delivered after a crash: the state already holds this message.
            metrics.duplicate(topic)
            return
        result = self.rt.processor.handle(
            customer_id,
            state,
            topic,
            event,
            self.rt.clock.now_ms,
            self.rt.assigner,
            self.rt.churn_params,
        )
        if result.status == "duplicate":
            metrics.duplicate(topic)
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
        mark_applied(result.state, topic, partition, message.offset)
        self.rt.observe_partition_clock(partition, event["ts"])
        self.customers.put(batch.customers, customer_id, partition, encode(result.state))
        self.emit(result, message, batch)
        if result.training_vector is not None:
            self.add_training_sample(customer_id, result)
        metrics.processed(topic)

    def add_training_sample(self, customer_id: str, result: Result) -> None:
        self.rt.training_buffer.append(training_sample(customer_id, result))

    def emit(self, result: Result, message: Any | None, batch: Batch) -> None:
        """Queue the result's output events; count transitions and flaps."""
        metrics = self.rt.metrics
        kafka_ts = getattr(message, "timestamp", None) if message is not None else None
        kafka_ts_ms = kafka_ts * 1000 if kafka_ts else None
        for change in result.segment_changes:
            self.send(batch, "segment-changes", change["customer_id"], change, kafka_ts_ms)
            metrics.transition(change["segment_type"], flap=change["segment_type"] in result.flaps)
        for churn in result.churn_events:
            self.send(batch, "churn-risk", churn["customer_id"], churn, kafka_ts_ms)
            metrics.churn_event(churn["level"])

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
        state = decode_state(self.customers.get(customer_id, partition))
        details: dict[str, int] = {}
        status = "done"
        if action == "opt_out":
            if state is not None and not state.get("opted_out"):
                result = self.rt.processor.leave_all_segments(
                    customer_id, state, event["ts"], event["event_id"]
                )
                self.emit(result, message, batch)
                details["segments_left"] = len(result.segment_changes)
            details["table_entries_cleared"] = int(state is not None)
            opted = new_customer_state()
            opted["opted_out"] = True
            opted["since_ms"] = event["ts"]
            opted["seq"] = (state or {}).get("seq", 0)
            # features dropped; only the flag stays
            self.customers.put(batch.customers, customer_id, partition, encode(opted))
        elif action == "opt_in":
            if state is not None and state.get("opted_out"):
                # tombstone: profiling starts afresh
                self.customers.put(batch.customers, customer_id, partition, None)
                details["changelog_tombstones"] = 1
        elif action == "erase":
            erased_at = self.suppressions.get(customer_id, partition)
            if state is not None:
                details["dedup_ids"] = dedup.id_count(state.get("dedup", {}))
                self.customers.put(batch.customers, customer_id, partition, None)  # tombstone
                details["table_entries"] = 1
                details["changelog_tombstones"] = 1
            elif erased_at is None or int(erased_at) != event["ts"]:
                status = "not_found"  # (a re-delivered request stays "done")
            # Only the id and the erase time stay, so a replay of older events
            # cannot recreate the profile (README, "Privacy").
            self.suppressions.put(
                batch.suppressions, customer_id, partition, str(event["ts"]).encode()
            )
            # The learner drops the customer's samples from its reservoir.
            self.rt.training_buffer.append({"erase": learner_key(customer_id)})
            details["model_erase_requests"] = 1
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
        self.rt.metrics.processed("privacy")

    # -- rejections -----------------------------------------------------------------
    def reject(self, topic: str, message: Any, error: Exception, reason: str, batch: Batch) -> None:
        metrics = self.rt.metrics
        metrics.rejected(topic, reason)
        try:
            record = dead_letter(
                source_topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
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
        """Re-evaluate silent customers at the stream clock; gather statistics.

        Works ``chunk`` customers at a time, each chunk a batch of its own, so
        ingest batches run in between and their latency stays low.
        """
        changed = 0
        for start in range(0, len(keys), chunk):
            batch = self.open_batch()
            changed += self._review(keys[start : start + chunk], partition, sweep, batch)
            await self.commit(batch)
        return changed

    def _review(self, keys: list[str], partition: int, sweep: PartitionSweep, batch: Batch) -> int:
        changed = 0
        clock_ms = self.rt.clock.now_ms
        processor = self.rt.processor
        model_version = self.rt.assigner_signature()
        for customer_id in keys:
            state = decode_state(self.customers.get(customer_id, partition))
            if state is None or state.get("opted_out"):
                continue
            if processor.due_for_review(state, clock_ms, model_version):
                try:
                    result = processor.review(
                        customer_id, state, clock_ms, self.rt.assigner, self.rt.churn_params
                    )
                except Exception:  # one customer's bad state must not stop the sweep
                    log.exception("review failed for a customer of this partition")
                    continue
                if result.write:
                    self.customers.put(batch.customers, customer_id, partition, encode(state))
                    self.emit(result, None, batch)
                    changed += 1
            sweep.count(state)
        return changed


def already_applied(state: dict[str, Any] | None, topic: str, partition: int, offset: int) -> bool:
    """Whether the message at ``offset`` of ``topic``/``partition`` is already in ``state``.

    All of a customer's messages of one topic are on one partition (keyed by
    customer id), in offset order, so the last applied offset tells exactly
    which re-delivered messages (after a crash, before the offsets were
    committed) the state already holds, however old their event time is.

    >>> state = {}
    >>> mark_applied(state, "purchases", 3, 41)
    >>> already_applied(state, "purchases", 3, 41), already_applied(state, "purchases", 3, 42)
    (True, False)
    >>> already_applied(state, "browsing", 3, 7), already_applied(None, "purchases", 3, 1)
    (False, False)
    """
    if state is None:
        return False
    seen = state.get("off", {}).get(topic)
    return seen is not None and seen[0] == partition and offset <= seen[1]


def mark_applied(state: dict[str, Any], topic: str, partition: int, offset: int) -> None:
    """Record that ``state`` holds the message at ``offset`` (see :func:`already_applied`)."""
    state.setdefault("off", {})[topic] = [partition, offset]
