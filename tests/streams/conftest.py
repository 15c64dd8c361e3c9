"""Fixtures of the stream tests: a worker app without Kafka."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import pytest

from streams.app import create_app
from streams.settings import Settings

__all__ = ["RecordingTopic"]


class RecordingTopic:
    """Stands in for an output topic: keeps what the pipeline sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, dict[str, Any]]] = []

    async def send(self, key: bytes | None = None, value: bytes = b"", **_: Any) -> None:
        self.sent.append((key, orjson.loads(value)))


@pytest.fixture
def app(tmp_path: Any) -> Any:
    # Events in arrival order: the event-time order needs a running consumer's
    # high watermarks (tests/streams/test_ordering.py, tests/integration).
    app = create_app(
        Settings(store="memory://", data_dir=tmp_path, app_id="agent-tests", order_max_held=0)
    )
    app.segmenter.broadcast_caught_up.set()  # no broadcast topics in a test context
    app.pipeline.outputs = defaultdict(RecordingTopic)
    changelog: list[tuple[str, bytes, bytes | None, int]] = []

    async def record_changelog(topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        changelog.append((topic, key, value, partition))

    app.pipeline.customers.send = record_changelog
    app.pipeline.suppressions.send = record_changelog
    app.changelog = changelog
    app.finalize()
    app.conf.store = "memory://"
    return app
