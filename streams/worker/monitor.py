"""A Faust monitor that records nothing per message.

Faust's default :class:`faust.sensors.Monitor` keeps per-event statistics
(messages in/out, stream event timings, send latencies) that Segmenter never
reads — its own Prometheus metrics (:mod:`streams.worker.metrics`) are what SREs
watch. Measured on the reference machine it costs 5 to 8 % of a bare Faust
consumer's CPU per event (``docs/benchmark.md``). Rebalance, assignment and
lifecycle hooks keep Faust's behaviour.
"""

from __future__ import annotations

from typing import Any

from faust.sensors import Monitor

__all__ = ["LeanMonitor"]


class LeanMonitor(Monitor):
    """:class:`faust.sensors.Monitor` without the per-message bookkeeping.

    >>> LeanMonitor().on_message_in(None, 0, None) is None
    True
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None

    def on_topic_buffer_full(self, tp: Any) -> None:
        return None

    def count(self, metric_name: str, count: int = 1) -> None:
        return None
