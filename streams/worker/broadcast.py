"""Read the broadcast topics every worker needs in full.

``segment-models`` (compacted) carries the learner's versioned snapshots and
``stream-clock`` (compacted) carries each partition's clock and segment
statistics. Every worker reads both from the beginning with its own
group-less consumer, so all workers assign with the same model and agree on
the stream clock.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.topics import CLOCK_TOPIC, MODELS_TOPIC
from streams.worker.runtime import Runtime

__all__ = ["run_broadcast_reader"]

log = logging.getLogger(__name__)


async def run_broadcast_reader(rt: Runtime, stopping: asyncio.Event | None = None) -> None:
    """Consume both broadcast topics forever, updating ``rt``."""
    settings = rt.settings
    models_tp = TopicPartition(settings.topic(MODELS_TOPIC), 0)
    clock_tp = TopicPartition(settings.topic(CLOCK_TOPIC), 0)
    while stopping is None or not stopping.is_set():
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
            consumer.assign([models_tp, clock_tp])
            await consumer.seek_to_beginning(models_tp, clock_tp)
            ends = await consumer.end_offsets([models_tp, clock_tp])
            while stopping is None or not stopping.is_set():
                batches = await consumer.getmany(timeout_ms=250, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        apply_record(rt, tp.topic == models_tp.topic, record.key, record.value)
                if not rt.broadcast_caught_up.is_set():
                    positions = [await consumer.position(tp) for tp in ends]
                    if all(pos >= ends[tp] for pos, tp in zip(positions, ends, strict=True)):
                        rt.broadcast_caught_up.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("broadcast reader failed; reconnecting in 2 s")
            await asyncio.sleep(2)
        finally:
            await consumer.stop()


def apply_record(rt: Runtime, is_model: bool, key: bytes | None, value: bytes | None) -> None:
    """Apply one record of a broadcast topic to the runtime.

    Never raises: a record that cannot be used is skipped (and, on
    segment-models, counted), so the reader goes on and readiness is reached.
    """
    if value is None:
        return
    try:
        message: Any = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        if is_model:
            rt.reject_model_record("unreadable", exc)
        else:
            log.warning("ignoring an unreadable stream-clock record")
        return
    if is_model:
        rt.install_model(message)
        return
    if not isinstance(message, dict):
        log.warning("ignoring a stream-clock record that is not an object")
        return
    partition_key = key.decode() if key else "?"
    rt.remote_stats[partition_key] = message
    clock_ms = message.get("clock_ms")
    if isinstance(clock_ms, int):
        rt.clock.heard(partition_key, clock_ms)
