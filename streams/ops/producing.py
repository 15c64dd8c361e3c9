"""Produce events to Kafka at a bounded rate (used by simulate and replay)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

__all__ = ["RateLimiter", "produce"]


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


async def produce(
    bootstrap: str,
    records: Iterable[tuple[str, bytes | None, bytes]],
    *,
    rate: float | None = None,
    on_sent: Any = None,
) -> int:
    """Send ``(topic, key, value)`` records; return how many were sent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=10,
        max_batch_size=256 * 1024,
        acks="all",
        enable_idempotence=True,
    )
    await producer.start()
    limiter = RateLimiter(rate)
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    try:
        for topic, key, value in records:
            pending.append(await producer.send(topic, value=value, key=key))
            sent += 1
            if on_sent is not None:
                on_sent(topic)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            await limiter.tick()
        if pending:
            await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return sent
