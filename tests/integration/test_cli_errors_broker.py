"""One-line errors that need a real broker to happen: Kafka refusing topics,
topics that were never created, a misspelled topic name."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from streams.ops.broker import metadata_ping
from streams.settings import Settings
from streams.topics import all_topics

from .conftest import SEGMENTER


def segmenter(
    *args: str, bootstrap: str, tmp: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTER_")}
    environ.update(SEGMENTER_KAFKA_BOOTSTRAP=bootstrap, SEGMENTER_DATA_DIR=str(tmp), **env)
    return subprocess.run(
        [SEGMENTER, *args], env=environ, cwd=tmp, capture_output=True, text=True, timeout=120
    )


def test_topics_kafka_refuses_are_an_error_not_created(bootstrap: str, tmp_path: Path) -> None:
    import asyncio

    prefix = f"rf{uuid.uuid4().hex[:6]}-"
    result = segmenter("topics", "create", bootstrap=bootstrap, tmp=tmp_path,
                       SEGMENTER_TOPIC_PREFIX=prefix, SEGMENTER_REPLICATION_FACTOR="3")  # fmt: skip
    assert result.returncode == 2, result
    (line,) = result.stderr.splitlines()
    every = len(all_topics(Settings(topic_prefix=prefix)))
    assert line.startswith(
        f"error: Kafka refused to create {every} topic(s), e.g. {prefix}purchases: "
        "InvalidReplicationFactorError ("
    ), line
    assert "created" not in result.stdout
    assert not [t for t in asyncio.run(metadata_ping(bootstrap)) if prefix in t]


def test_a_worker_without_its_topics_says_which(bootstrap: str, tmp_path: Path) -> None:
    prefix = f"none{uuid.uuid4().hex[:6]}-"
    result = segmenter("worker", bootstrap=bootstrap, tmp=tmp_path, SEGMENTER_TOPIC_PREFIX=prefix)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: topics missing on {bootstrap}: {prefix}purchases, ")
    assert "segmenter topics create" in line


def test_a_misspelled_topic_gets_a_suggestion(bootstrap: str, tmp_path: Path) -> None:
    prefix = f"tail{uuid.uuid4().hex[:6]}-"
    created = segmenter("topics", "create", bootstrap=bootstrap, tmp=tmp_path,
                        SEGMENTER_TOPIC_PREFIX=prefix)  # fmt: skip
    assert created.returncode == 0, created
    result = segmenter("tail", "segment-change", bootstrap=bootstrap, tmp=tmp_path,
                       SEGMENTER_TOPIC_PREFIX=prefix)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: topic '{prefix}segment-change' does not exist on {bootstrap}; "
        f"did you mean '{prefix}segment-changes'?"
    ]
