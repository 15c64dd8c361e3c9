"""Human-readable output for `segmenter tail` and `segmenter customer`."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table

from streams.settings import Settings

__all__ = ["format_record", "is_initial", "render_customer", "tail_topic"]

LEVEL_STYLE = {"high": "bold red", "medium": "yellow", "low": "green"}


def format_record(topic: str, value: bytes | None) -> str:
    """One line for a record of an output topic (rich markup).

    >>> format_record("churn-risk", b'{"customer_id":"c1","ts":"2026-01-02T00:00:00.000Z",'
    ...     b'"level":"high","previous_level":"low","score":0.81,"reasons":["no activity"]}')
    '2026-01-02T00:00:00.000Z c1 churn low → [bold red]high[/] (0.81) no activity'
    """
    if value is None:
        return "(tombstone)"
    try:
        event: dict[str, Any] = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode(errors="replace")
    if topic.endswith("segment-changes"):
        return (
            f"{event['ts']} {event['customer_id']} #{event['seq']} {event['segment_type']}: "
            f"{event['previous']} → [bold]{event['current']}[/] ({event['label']}) "
            + "; ".join(event.get("reasons", []))
        )
    if topic.endswith("churn-risk"):
        style = LEVEL_STYLE.get(event["level"], "")
        return (
            f"{event['ts']} {event['customer_id']} churn {event['previous_level']} → "
            f"[{style}]{event['level']}[/] ({event['score']:.2f}) " + "; ".join(event["reasons"])
        )
    if topic.endswith("dead-letters"):
        error = event.get("error", {})
        return (
            f"{event['source_topic']}[{event['partition']}]@{event['offset']} "
            f"[red]{error.get('reason')}[/] {error.get('field')}: {error.get('message')}"
        )
    return orjson.dumps(event).decode()


def is_initial(value: bytes | None) -> bool:
    """Whether a record is a first assignment (``"initial": true``), not a move.

    >>> is_initial(b'{"initial": true}'), is_initial(b'{"initial": false}'), is_initial(b"x")
    (True, False, False)
    """
    try:
        return bool(value) and orjson.loads(value or b"{}").get("initial") is True
    except (orjson.JSONDecodeError, AttributeError):
        return False


async def tail_topic(
    settings: Settings,
    topic: str,
    from_beginning: bool,
    limit: int | None,
    show_initial: bool = False,
) -> None:
    """Print records of ``topic`` until interrupted (or ``limit`` records).

    First assignments (``"initial": true``) are left out unless ``show_initial``.
    """
    console = Console(highlight=False, soft_wrap=True)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    try:
        async for record in consumer:
            if not show_initial and is_initial(record.value):
                continue
            console.print(format_record(topic, record.value))
            seen += 1
            if limit is not None and seen >= limit:
                break
    finally:
        await consumer.stop()


def render_customer(document: dict[str, Any]) -> None:
    """Print a customer document as readable tables."""
    console = Console(highlight=False)
    churn = document.get("churn_risk", {})
    style = LEVEL_STYLE.get(churn.get("level") or "", "")
    console.print(
        f"[bold]{document['customer_id']}[/]  stream clock {document.get('stream_clock')}"
    )
    score = churn.get("score")
    score_text = f"{score:.2f}" if isinstance(score, int | float) else "-"
    console.print(f"churn risk: [{style}]{churn.get('level')}[/] ({score_text})")
    for reason in churn.get("reasons", []):
        console.print(f"  • {reason}")
    segments = Table("segment type", "segment", "label", title="segments")
    labels = document.get("segment_labels", {})
    for seg_type, current in sorted(document.get("segments", {}).items()):
        segments.add_row(seg_type, str(current), str(labels.get(seg_type) or ""))
    console.print(segments)
    features = Table("feature", "value", title="features")
    for name, value in document.get("features", {}).items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict):
            value = orjson.dumps(value).decode()
        features.add_row(name, str(value))
    console.print(features)
