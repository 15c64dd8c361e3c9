"""Produce events to Kafka at a bounded rate (used by simulate and replay)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

__all__ = ["RateLimiter", "Record", "produce"]


class RateLimiter:
    """Pace a loop to ``rate`` iterations per second (``None``: unlimited).

    Sleeps in slices rather than per event, so high rates cost little.
    """

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.started = time.monotonic()
        self.count = 0

    async def tick(self) -> None:
        self.count += 1
        if not self.rate:
            if self.count % 2000 == 0:
                await asyncio.sleep(0)
            return
        ahead = self.count / self.rate - (time.monotonic() - self.started)
        if ahead > 0.005:
            await asyncio.sleep(ahead)


Record = tuple[str, bytes | None, bytes | None] | tuple[str, bytes | None, bytes | None, int]


async def produce(
    bootstrap: str,
    records: Iterable[Record],
    *,
    rate: float | None = None,
    on_sent: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    acks: int | str = "all",
    linger_ms: int = 10,
    max_batch_size: int = 256 * 1024,
    window: int = 5000,
) -> int:
    """Send ``(topic, key, value[, partition])`` records; return how many were sent.

    The one producer of the CLI (``simulate``, ``replay``), the benchmarks and
    the broker tests. Records go out in order, at most ``window`` unacknowledged
    at a time; ``progress`` is told the count after each window and at the end.
    ``acks="all"`` also makes the producer idempotent (a retried batch is not
    written twice); the benchmark's changelog preload trades that for speed with
    ``acks=1``. A record without a partition goes where the key hashes to
    (Kafka's default partitioner, as every client does), an explicit partition
    is kept.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=linger_ms,
        max_batch_size=max_batch_size,
        acks=acks,
        enable_idempotence=acks == "all",
    )
    await producer.start()
    limiter = RateLimiter(rate)
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    try:
        for record in records:
            topic, key, value = record[0], record[1], record[2]
            partition = record[3] if len(record) > 3 else None
            pending.append(await producer.send(topic, value=value, key=key, partition=partition))
            sent += 1
            if on_sent is not None:
                on_sent(topic)
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending.clear()
                if progress is not None:
                    progress(sent)
            await limiter.tick()
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    if progress is not None:
        progress(sent)
    return sent
