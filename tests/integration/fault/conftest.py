"""Helpers for the fault-tolerance tests: histories, completion criteria, outputs.

The fixtures (``bootstrap``, ``stack_factory``) come from
``tests/integration/conftest.py``. Handled-message counters restart at zero
when a worker restarts, so these tests use two other completion criteria:

* every customer's features equal the pandas reference (``wait_features``), and
* the consumer group's committed offsets reached the end offsets of every input
  topic (``wait_committed``): nothing is left to (re)process.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from models.eventtime import parse_ts
from streams.ops.broker import LocalBroker
from streams.tools.simulator import Simulation
from streams.topics import INPUT_TOPICS
from streams.worker.model_events import MODEL_KEY, model_event_breaks
from tests.integration.conftest import REPO, Stack, Worker, free_port
from tests.reference import compare_features, reference_features

__all__ = [
    "History",
    "committed_lag",
    "duplicate_stats",
    "feature_mismatches",
    "history",
    "id_report",
    "last_changes_mismatch",
    "output_conflicts",
    "read_topic",
    "segment_chain_breaks",
    "served_segments",
    "wait_committed",
    "wait_features",
]


CACHED_JARS = REPO / ".segmenter" / "kafka" / "jars"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A single-node broker of the test's own (never the shared one), so the
    test can stop and start it: data under ``tmp_path``, free ports, a small
    heap, and the cached broker jars linked in so nothing is downloaded."""
    if not (CACHED_JARS / ".complete").exists():
        pytest.skip("the broker jars are not cached yet (run `segmenter kafka start` once)")
    broker = LocalBroker(
        tmp_path / "broker", port=free_port(), controller_port=free_port(), heap="384m"
    )
    broker.home.mkdir(parents=True)
    broker.jars_dir.symlink_to(CACHED_JARS, target_is_directory=True)  # has `.complete`
    broker.start(timeout=120)
    try:
        yield broker
    finally:
        broker.stop()  # only ever this test's broker: checked by pid and home dir


@dataclass
class History:
    """A simulated history and what the worker must answer after it."""

    events: list[tuple[str, dict[str, Any]]]
    clock_ms: int
    expected: dict[str, dict[str, Any]]


def history(customers: int = 60, days: int = 40, seed: int = 5) -> History:
    events = list(Simulation(customers=customers, days=days, seed=seed).events())
    clock_ms = max(parse_ts(e["ts"]) for _, e in events)
    return History(events, clock_ms, reference_features(events, clock_ms))


def feature_mismatches(worker: Worker, expected: dict[str, dict[str, Any]]) -> list[str]:
    """Every difference between the worker's features and ``expected`` (empty: equal)."""
    out: list[str] = []
    for customer_id, want in expected.items():
        try:
            status, body = worker.get(f"/customers/{customer_id}")
        except OSError as exc:  # the worker is restarting or rebalancing
            out.append(f"{customer_id}: {exc!r}")
            continue
        if status != 200:
            out.append(f"{customer_id}: HTTP {status}")
            continue
        out += [f"{customer_id}: {m}" for m in compare_features(body["features"], want)]
    return out


def wait_features(
    worker: Worker, expected: dict[str, dict[str, Any]], timeout: float = 120.0
) -> float:
    """Poll until every customer's features equal ``expected``; return the seconds taken."""
    started = time.monotonic()
    deadline = started + timeout
    last: list[str] = []
    while time.monotonic() < deadline:
        assert worker.proc is not None
        if worker.proc.poll() is not None:
            raise AssertionError(f"worker exited ({worker.proc.returncode}):\n{worker.log_tail()}")
        last = feature_mismatches(worker, expected)
        if not last:
            return time.monotonic() - started
        time.sleep(1.0)
    raise AssertionError(
        f"features still differ after {timeout}s ({len(last)} differences), e.g. {last[:5]}\n"
        f"{worker.log_tail(30)}"
    )


async def committed_lag(stack: Stack, topics: tuple[str, ...] = INPUT_TOPICS) -> int:
    """Messages of ``topics`` beyond the consumer group's committed offsets."""
    names = [stack.topic(t) for t in topics]
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(stack.app_id)
        tps = [
            TopicPartition(name, p)
            for name in names
            for p in (consumer.partitions_for_topic(name) or set())
        ]
        if not tps:
            await consumer._client.force_metadata_update()  # type: ignore[attr-defined]
            tps = [
                TopicPartition(name, p)
                for name in names
                for p in (consumer.partitions_for_topic(name) or set())
            ]
        ends = await consumer.end_offsets(tps)
        lag = 0
        for tp, end in ends.items():
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag += max(0, end - done)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


def wait_committed(stack: Stack, timeout: float = 60.0) -> None:
    """Poll until the group has committed every input message."""
    deadline = time.monotonic() + timeout
    lag = -1
    while time.monotonic() < deadline:
        lag = asyncio.run(committed_lag(stack))
        if lag == 0:
            return
        time.sleep(1.0)
    raise AssertionError(f"{lag} input messages still uncommitted after {timeout}s")


async def read_topic(stack: Stack, topic: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every value of an output topic (short name), decoded, from the beginning."""
    raw = await stack.consume_raw(stack.topic(topic), timeout=timeout)
    return [orjson.loads(value) for _key, value in raw if value]


def output_conflicts(records: list[dict[str, Any]], fields: tuple[str, ...]) -> list[str]:
    """Event ids that were emitted more than once with different ``fields``.

    A re-emission after a crash must describe the same logical change: same
    customer, segment type, previous and current segment (or churn level).
    """
    seen: dict[str, dict[str, Any]] = {}
    conflicts = []
    for record in records:
        logical = {f: record.get(f) for f in fields}
        first = seen.setdefault(record["event_id"], logical)
        if first != logical:
            conflicts.append(f"{record['event_id']}: {first} vs {logical}")
    return conflicts


def id_report(changes: list[dict[str, Any]], churn: list[dict[str, Any]]) -> dict[str, Any]:
    """Ids per change and changes per id over both output topics, as received.

    A change is what a consumer sees: customer, segment type (or churn),
    ``seq``, previous and current. ``ids_per_change`` lists changes sent under
    more than one id (a consumer would act twice); ``changes_per_id`` ids that
    stand for more than one change apart from ``seq`` (a consumer would lose
    one). ``renumbered`` counts ids re-sent with another ``seq`` (the same
    change decided again after one before it came out differently; not an
    error, see docs/schemas.md).
    """
    ids: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    what: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    seqs: dict[str, set[int]] = defaultdict(set)
    for topic, records in (("segment-changes", changes), ("churn-risk", churn)):
        for r in records:
            if topic == "churn-risk":
                change = (topic, r["customer_id"], "churn", r["previous_level"], r["level"])
            else:
                change = (topic, r["customer_id"], r["segment_type"], r["previous"], r["current"])
            ids[(*change, r.get("seq"))].add(r["event_id"])
            what[r["event_id"]].add(change)
            seqs[r["event_id"]].add(r.get("seq"))
    return {
        "records": len(changes) + len(churn),
        "ids": len(what),
        "resent": len(changes) + len(churn) - len(what),
        "ids_per_change": {c: sorted(i) for c, i in ids.items() if len(i) > 1},
        "changes_per_id": {i: sorted(c, key=str) for i, c in what.items() if len(c) > 1},
        "renumbered": sum(1 for s in seqs.values() if len(s) > 1),
    }


def duplicate_stats(records: list[dict[str, Any]]) -> dict[str, int]:
    """How many records, distinct event ids, and ids seen more than once."""
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        counts[record["event_id"]] += 1
    return {
        "records": len(records),
        "distinct": len(counts),
        "repeated_ids": sum(1 for n in counts.values() if n > 1),
    }


def segment_chain_breaks(
    changes: list[dict[str, Any]], segments: dict[str, dict[str, Any]] | None = None
) -> list[str]:
    """Places where a consumer replaying ``segment-changes`` would lose track.

    After de-duplicating by ``event_id`` and ordering each customer's changes by
    ``seq``, every change of a segment type must start where the previous one
    ended (``previous`` == the earlier ``current``, the first from ``None``),
    and, when ``segments`` (customer -> {segment_type: current}) is given, the
    last one must end at the segment the worker serves. A lost output shows up
    as a break; a re-emission with the same id does not. The model events
    (customer ``*``) are no such chain; they follow their own rule
    (:func:`streams.worker.model_events.model_event_breaks`, docs/schemas.md).
    """
    unique: dict[str, dict[str, Any]] = {}
    model_events = [c for c in changes if c["customer_id"] == MODEL_KEY]
    breaks = [f"{MODEL_KEY}/cluster {b}" for b in model_event_breaks(model_events)]
    for change in changes:
        if change["customer_id"] == MODEL_KEY:
            continue
        unique.setdefault(change["event_id"], change)
    chains: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for change in unique.values():
        chains[(change["customer_id"], change["segment_type"])].append(change)
    for (customer_id, seg_type), chain in sorted(chains.items()):
        chain.sort(key=lambda c: (c["seq"], c["ts"]))
        current = None
        for change in chain:
            if change["previous"] != current:
                breaks.append(
                    f"{customer_id}/{seg_type} seq {change['seq']}: previous "
                    f"{change['previous']!r} but the last change ended at {current!r}"
                )
            current = change["current"]
        if segments is not None and customer_id in segments:
            served = segments[customer_id].get(seg_type)
            if served != current:
                breaks.append(
                    f"{customer_id}/{seg_type}: changes end at {current!r}, "
                    f"worker serves {served!r}"
                )
    return breaks


def last_changes_mismatch(
    changes: list[dict[str, Any]], segments: dict[str, dict[str, Any]]
) -> list[str]:
    """Customers whose latest change per segment type, in topic order, does not
    end at the segment the worker serves (``segments``: customer -> {type: current}).

    Weaker than :func:`segment_chain_breaks`: after a fault, a change sent but
    never stored may be decided differently the second time (a newer cluster
    model, another order of events during a rebalance); the first decision
    stays on the topic as a phantom and breaks the chain, but the record that
    follows it there is the one that counts. A lost output shows up here.
    """
    last: dict[tuple[str, str], Any] = {}
    for change in changes:  # one customer's records are in one partition, in order
        last[(change["customer_id"], change["segment_type"])] = change["current"]
    out = []
    for customer_id, served in sorted(segments.items()):
        for seg_type, current in served.items():
            if last.get((customer_id, seg_type)) != current:
                out.append(
                    f"{customer_id}/{seg_type}: last change ends at "
                    f"{last.get((customer_id, seg_type))!r}, worker serves {current!r}"
                )
    return out


def served_segments(worker: Worker, customers: list[str]) -> dict[str, dict[str, Any]]:
    """customer -> {segment_type: current} as served by ``GET /customers/{id}``."""
    out = {}
    for customer_id in customers:
        status, body = worker.get(f"/customers/{customer_id}")
        if status == 200:
            out[customer_id] = body["segments"]
    return out
