"""The hot path: one input message in, table write and output events out.

Each input agent calls :meth:`Pipeline.on_message` for every message. A message
that cannot be parsed, validated or processed goes to ``dead-letters`` with
the reason; the worker never stops on one bad message.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from models import dedup
from schemas import InvalidEvent, dead_letter, validate
from streams.codec import decode_state, encode
from streams.processing import Result, learner_key, new_customer_state, training_sample
from streams.runtime import Runtime
from streams.sweep import PartitionSweep

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    """Bind the runtime to the app's tables and output topics."""

    rt: Runtime
    customers: Any  # faust Table[str, bytes]
    suppressions: Any  # faust Table[str, bytes]: erased customers -> erase time
    outputs: dict[str, Any]  # logical output name -> faust Topic

    # -- entry point ----------------------------------------------------------
    async def on_message(self, topic: str, message: Any) -> None:
        """Process one Kafka message of the logical input ``topic``."""
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
                await self.on_privacy(event, message)
            else:
                await self.on_event(topic, event, message)
        except InvalidEvent as err:
            await self.reject(topic, message, err, err.reason)
        except Exception as exc:  # a poison message must not stop the partition
            log.exception(
                "processing failed for %s[%s]@%s", message.topic, message.partition, message.offset
            )
            await self.reject(topic, message, exc, "processing_error")
        else:
            metrics.observe_processing(topic, time.perf_counter() - started)

    # -- behaviour and profile events ------------------------------------------
    async def on_event(self, topic: str, event: dict[str, Any], message: Any) -> None:
        customer_id = event["customer_id"]
        metrics = self.rt.metrics
        erased_at = self.suppressions.get(customer_id)
        if erased_at is not None and event["ts"] <= int(erased_at):
            # An event from before the customer's erasure (a replay, a late
            # producer): dropped on purpose and not dead-lettered, since the
            # dead-letter topic would keep the personal data we just erased.
            metrics.rejected(topic, "erased")
            return
        state = decode_state(self.customers.get(customer_id))
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
        self.rt.observe_partition_clock(message.partition, event["ts"])
        self.customers[customer_id] = encode(result.state)
        await self.emit(result, message)
        if result.training_vector is not None:
            self.add_training_sample(customer_id, result)
        metrics.processed(topic)

    def add_training_sample(self, customer_id: str, result: Result) -> None:
        self.rt.training_buffer.append(training_sample(customer_id, result))

    async def emit(self, result: Result, message: Any | None) -> None:
        """Send the result's output events; count transitions, flaps, latency."""
        metrics = self.rt.metrics
        kafka_ts = getattr(message, "timestamp", None) if message is not None else None
        kafka_ts_ms = kafka_ts * 1000 if kafka_ts else None
        for change in result.segment_changes:
            await self.send("segment-changes", change["customer_id"], change)
            metrics.transition(change["segment_type"], flap=change["segment_type"] in result.flaps)
            metrics.observe_emit_latency("segment_changes", kafka_ts_ms)
        for churn in result.churn_events:
            await self.send("churn-risk", churn["customer_id"], churn)
            metrics.churn_event(churn["level"])
            metrics.observe_emit_latency("churn_risk", kafka_ts_ms)

    async def send(self, output: str, key: str | None, value: dict[str, Any]) -> None:
        await self.outputs[output].send(
            key=key.encode() if key is not None else None, value=encode(value)
        )
        self.rt.metrics.output(output)

    # -- privacy ------------------------------------------------------------------
    async def on_privacy(self, event: dict[str, Any], message: Any) -> None:
        customer_id = event["customer_id"]
        action = event["action"]
        self.rt.metrics.privacy_request(action)
        state = decode_state(self.customers.get(customer_id))
        details: dict[str, int] = {}
        status = "done"
        if action == "opt_out":
            if state is not None and not state.get("opted_out"):
                result = self.rt.processor.leave_all_segments(
                    customer_id, state, event["ts"], event["event_id"]
                )
                await self.emit(result, message)
                details["segments_left"] = len(result.segment_changes)
            details["table_entries_cleared"] = int(state is not None)
            opted = new_customer_state()
            opted["opted_out"] = True
            opted["since_ms"] = event["ts"]
            opted["seq"] = (state or {}).get("seq", 0)
            self.customers[customer_id] = encode(opted)  # features dropped; only the flag stays
        elif action == "opt_in":
            if state is not None and state.get("opted_out"):
                del self.customers[customer_id]  # tombstone: profiling starts afresh
                details["changelog_tombstones"] = 1
        elif action == "erase":
            if state is not None:
                details["dedup_ids"] = dedup.id_count(state.get("dedup", {}))
                del self.customers[customer_id]  # tombstone on the changelog
                details["table_entries"] = 1
                details["changelog_tombstones"] = 1
            else:
                status = "not_found"
            # Only the id and the erase time stay, so a replay of older events
            # cannot recreate the profile (README, "Privacy").
            self.suppressions[customer_id] = str(event["ts"]).encode()
            # The learner drops the customer's samples from its reservoir.
            self.rt.training_buffer.append({"erase": learner_key(customer_id)})
            details["model_erase_requests"] = 1
        await self.send(
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
        )
        self.rt.metrics.processed("privacy")

    # -- rejections -----------------------------------------------------------------
    async def reject(self, topic: str, message: Any, error: Exception, reason: str) -> None:
        metrics = self.rt.metrics
        metrics.rejected(topic, reason)
        record = dead_letter(
            source_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            raw=message.value,
            error=error,
            now_ms=int(time.time() * 1000),
        )
        try:
            await self.send("dead-letters", None, record)
            metrics.dead_letter(topic)
        except Exception:  # never lose the worker because the DLQ send failed
            log.exception(
                "could not dead-letter %s[%s]@%s", message.topic, message.partition, message.offset
            )

    # -- timers -----------------------------------------------------------------------
    async def review_partition(self, keys: list[str], sweep: PartitionSweep) -> int:
        """Re-evaluate silent customers at the stream clock; gather statistics."""
        changed = 0
        clock_ms = self.rt.clock.now_ms
        processor = self.rt.processor
        model_version = self.rt.assigner_signature()
        for customer_id in keys:
            state = decode_state(self.customers.get(customer_id))
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
                    self.customers[customer_id] = encode(state)
                    await self.emit(result, None)
                    changed += 1
            sweep.count(state)
        return changed
