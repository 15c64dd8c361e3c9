"""kcat (librdkafka's command-line client) as a second producer in integration tests.

librdkafka places keyed messages with its own default partitioner
(``consistent_random``: CRC32 of the key), not the Java client's murmur2, so
kcat is the client most users of confluent-kafka, Go or Node meet first.
``scripts/install-kcat.sh`` (run by ``make test``) installs Debian's package.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

__all__ = ["KCAT", "kcat_produce", "require_kcat"]

KCAT = shutil.which("kcat")


def require_kcat() -> str:
    """The kcat binary, or skip the test saying how to get it."""
    if KCAT is None:
        pytest.skip(
            "kcat is not installed: scripts/install-kcat.sh installs Debian's kcat "
            "package (make test runs it; it needs root and apt-get)"
        )
    return KCAT


def kcat_produce(
    bootstrap: str,
    topic: str,
    events: Iterable[dict[str, Any]],
    *,
    keyed: bool = True,
    partitioner: str | None = None,
    partition: int | None = None,
) -> int:
    """Produce ``events`` (JSON) to the full ``topic`` name with kcat; return how many.

    ``keyed``: key = ``customer_id`` (kcat ``-K``), else no key. ``partitioner``:
    librdkafka's ``partitioner`` setting (default: librdkafka's default,
    ``consistent_random``); ``partition``: a fixed partition (``-p``).
    """
    binary = require_kcat()
    lines = [
        (event["customer_id"].encode() + b"\t" if keyed else b"") + orjson.dumps(event)
        for event in events
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records"
        path.write_bytes(b"\n".join(lines) + b"\n")
        command = [binary, "-b", bootstrap, "-P", "-t", topic, "-l", str(path)]
        command += ["-X", "acks=all", "-X", "linger.ms=5"]
        if keyed:
            command += ["-K", "\t"]
        if partitioner is not None:
            command += ["-X", f"partitioner={partitioner}"]
        if partition is not None:
            command += ["-p", str(partition)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    # kcat exits 0 even when some deliveries failed; it reports them on stderr.
    if done.returncode != 0 or "failed" in done.stderr.lower():
        raise AssertionError(f"kcat failed ({done.returncode}): {done.stderr[-2000:]}")
    return len(lines)
