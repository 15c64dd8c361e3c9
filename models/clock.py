"""The stream clock: the largest event time seen, shared by all workers."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["StreamClock"]


@dataclass
class StreamClock:
    """Largest event time seen locally, and as heard from other workers.

    Examples
    --------
    >>> clock = StreamClock()
    >>> clock.observe(1_000); clock.observe(500); clock.now_ms
    1000
    >>> clock.heard("worker-b", 2_000); clock.now_ms
    2000
    >>> clock.local_ms
    1000
    """

    local_ms: int = 0
    remote_ms: dict[str, int] = field(default_factory=dict)
    _now_ms: int = 0

    def observe(self, ts_ms: int) -> None:
        """Record an accepted event's time."""
        if ts_ms > self.local_ms:
            self.local_ms = ts_ms
            if ts_ms > self._now_ms:
                self._now_ms = ts_ms

    def heard(self, worker: str, ts_ms: int) -> None:
        """Record another worker's clock (from the stream-clock topic)."""
        if ts_ms > self.remote_ms.get(worker, 0):
            self.remote_ms[worker] = ts_ms
            if ts_ms > self._now_ms:
                self._now_ms = ts_ms

    @property
    def now_ms(self) -> int:
        """The stream clock: the largest event time any worker has seen."""
        return self._now_ms
