"""What the live view shows, read from the workers' ``/metrics`` and ``/segments``.

Parsing is pure (text or JSON in, dataclasses out) and tested without a
worker; :func:`fetch_overview` does the HTTP. Several workers may be given:
counters and per-worker gauges (events, lag, model) are summed or combined
over them; segment sizes, customers and churn levels come from ``/segments``,
which already totals every partition of the deployment.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "MetricsSample",
    "Overview",
    "SegmentRow",
    "build_overview",
    "fetch_overview",
    "parse_metrics",
    "parse_segments",
]

CHURN_LEVELS = ("low", "medium", "high")


@dataclass
class MetricsSample:
    """One scrape of one or more workers' ``/metrics``, summed."""

    at: float  # monotonic time of the scrape
    consumed: float = 0.0  # input messages read, all topics
    processed: float = 0.0  # events applied to customer state
    rejected: float = 0.0
    outputs: float = 0.0  # records produced to output topics
    lag: float | None = None  # messages behind, over assigned partitions (None: unknown)
    model_version: int | None = None  # highest version any worker holds
    clusters: int | None = None
    customers: float | None = None  # table keys held, summed over workers
    churn_levels: dict[str, float] = field(default_factory=dict)
    stream_clock_s: float | None = None
    ready: int = 0  # workers that report ready
    workers: int = 0  # workers scraped


def parse_metrics(texts: Iterable[str], at: float | None = None) -> MetricsSample:
    """Sum the Prometheus text expositions of several workers.

    >>> text = '''# TYPE segmenter_events_consumed_total counter
    ... segmenter_events_consumed_total{topic="purchases"} 10.0
    ... segmenter_events_consumed_total{topic="browsing"} 30.0
    ... # TYPE segmenter_consumer_lag gauge
    ... segmenter_consumer_lag{partition="0",topic="purchases"} 5.0
    ... # TYPE segmenter_model_version gauge
    ... segmenter_model_version 3.0
    ... '''
    >>> sample = parse_metrics([text, text], at=0.0)
    >>> sample.consumed, sample.lag, sample.model_version, sample.workers
    (80.0, 10.0, 3, 2)
    """
    sample = MetricsSample(at=time.monotonic() if at is None else at)
    for text in texts:
        sample.workers += 1
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                _add(sample, s.name, s.labels, s.value)
    return sample


def _add(sample: MetricsSample, name: str, labels: dict[str, str], value: float) -> None:
    if name == "segmenter_events_consumed_total":
        sample.consumed += value
    elif name == "segmenter_events_processed_total":
        sample.processed += value
    elif name == "segmenter_events_rejected_total":
        sample.rejected += value
    elif name == "segmenter_outputs_total":
        sample.outputs += value
    elif name == "segmenter_consumer_lag":
        sample.lag = (sample.lag or 0.0) + value
    elif name == "segmenter_model_version" and value > 0:
        sample.model_version = max(sample.model_version or 0, int(value))
    elif name == "segmenter_model_clusters" and value > 0:
        sample.clusters = int(value)
    elif name == "segmenter_table_keys" and labels.get("table") == "customers":
        sample.customers = (sample.customers or 0.0) + value
    elif name == "segmenter_churn_risk_level_customers":
        level = labels.get("level", "")
        sample.churn_levels[level] = sample.churn_levels.get(level, 0.0) + value
    elif name == "segmenter_stream_clock_timestamp_seconds" and value > 0:
        sample.stream_clock_s = max(sample.stream_clock_s or 0.0, value)
    elif name == "segmenter_worker_ready":
        sample.ready += int(value)


@dataclass
class SegmentRow:
    """One segment of ``/segments``: its size now and its change over one day."""

    segment_type: str
    id: str
    label: str
    size: int
    growth_1d: int


@dataclass
class SegmentsSample:
    """The parts of ``GET /segments`` the view shows."""

    rows: list[SegmentRow] = field(default_factory=list)
    model_version: str | None = None
    clusters: int | None = None
    customers: int | None = None  # None: an older worker without the totals
    churn_levels: dict[str, int] | None = None


def parse_segments(document: dict[str, Any]) -> SegmentsSample:
    """Rows per segment (types in catalogue order) and the deployment totals.

    >>> doc = {"model_version": "km-2", "clusters": 2, "customers": 7,
    ...        "churn_levels": {"low": 5, "high": 2},
    ...        "segments": [{"type": "lifecycle", "id": "new", "label": "New", "size": 4,
    ...                      "growth_1d": 1}]}
    >>> sample = parse_segments(doc)
    >>> sample.rows[0].size, sample.customers, sample.churn_levels["high"], sample.clusters
    (4, 7, 2, 2)
    """
    rows = [
        SegmentRow(
            segment_type=str(entry.get("type")),
            id=str(entry.get("id")),
            label=str(entry.get("label") or ""),
            size=int(entry.get("size") or 0),
            growth_1d=int(entry.get("growth_1d") or 0),
        )
        for entry in document.get("segments") or []
        # (the churn levels are segments of type churn in the catalogue, for their
        # KPIs; the view shows them in the churn panel, from churn_levels)
        if entry.get("type") != "churn"
    ]
    churn = document.get("churn_levels")
    customers = document.get("customers")
    return SegmentsSample(
        rows=rows,
        model_version=document.get("model_version"),
        clusters=int(document["clusters"]) if document.get("clusters") else None,
        customers=int(customers) if isinstance(customers, int | float) else None,
        churn_levels={str(k): int(v) for k, v in churn.items()}
        if isinstance(churn, dict)
        else None,
    )


@dataclass
class Overview:
    """Everything one frame of the view shows (numbers only, no formatting)."""

    urls: Sequence[str]
    reachable: int  # workers that answered
    events_per_s: float | None  # input messages per second since the previous scrape
    lag: float | None
    customers: int | None
    churn_levels: dict[str, int]
    model_version: str | None
    clusters: int | None
    stream_clock_s: float | None
    segments: dict[str, list[SegmentRow]]  # segment type -> rows, largest first
    errors: list[str] = field(default_factory=list)


def rate(previous: MetricsSample | None, current: MetricsSample) -> float | None:
    """Input messages per second between two scrapes (None without two good ones).

    A worker that restarted (its counter went back) gives no rate for one scrape.

    >>> rate(MetricsSample(at=0.0, consumed=100.0, workers=1),
    ...      MetricsSample(at=2.0, consumed=300.0, workers=1))
    100.0
    >>> rate(MetricsSample(at=0.0, consumed=100.0, workers=1),
    ...      MetricsSample(at=2.0, consumed=50.0, workers=1)) is None
    True
    """
    if previous is None or current.workers == 0 or previous.workers != current.workers:
        return None
    elapsed = current.at - previous.at
    delta = current.consumed - previous.consumed
    if elapsed <= 0 or delta < 0:
        return None
    return delta / elapsed


def build_overview(
    urls: Sequence[str],
    metrics: MetricsSample,
    previous: MetricsSample | None,
    segments: SegmentsSample | None,
    errors: list[str] | None = None,
) -> Overview:
    """Combine one scrape of ``/metrics`` (and the one before) with ``/segments``."""
    by_type: dict[str, list[SegmentRow]] = defaultdict(list)
    for row in segments.rows if segments is not None else []:
        by_type[row.segment_type].append(row)
    for rows in by_type.values():
        rows.sort(key=lambda r: -r.size)  # ties keep the catalogue order (none, low, …)
    customers: int | None = None
    churn: dict[str, int] = {}
    if segments is not None and segments.customers is not None:
        customers = segments.customers
    elif metrics.customers is not None:
        customers = int(metrics.customers)
    if segments is not None and segments.churn_levels is not None:
        churn = dict(segments.churn_levels)
    else:
        churn = {k: int(v) for k, v in metrics.churn_levels.items()}
    model = segments.model_version if segments is not None else None
    if model is None and metrics.model_version is not None:
        model = f"km-{metrics.model_version}"
    clusters = segments.clusters if segments is not None and segments.clusters else None
    return Overview(
        urls=urls,
        reachable=metrics.workers,
        events_per_s=rate(previous, metrics),
        lag=metrics.lag,
        customers=customers,
        churn_levels=churn,
        model_version=model,
        clusters=clusters or metrics.clusters,
        stream_clock_s=metrics.stream_clock_s,
        segments=dict(by_type),
        errors=list(errors or []),
    )


async def _get(session: Any, url: str) -> tuple[int, bytes]:
    async with session.get(url) as response:
        return response.status, await response.read()


async def fetch_overview(
    session: Any, urls: Sequence[str], previous: MetricsSample | None
) -> tuple[Overview, MetricsSample]:
    """Scrape every worker's ``/metrics`` and one worker's ``/segments``.

    ``session`` is an :class:`aiohttp.ClientSession`. Workers that do not
    answer are left out (and named in ``errors``).
    """
    import orjson

    errors: list[str] = []
    texts: list[str] = []
    replies = await asyncio.gather(
        *(_get(session, url.rstrip("/") + "/metrics") for url in urls), return_exceptions=True
    )
    for url, reply in zip(urls, replies, strict=True):
        if isinstance(reply, BaseException):
            errors.append(f"{url}: {type(reply).__name__}")
        elif reply[0] != 200:
            errors.append(f"{url}/metrics: HTTP {reply[0]}")
        else:
            texts.append(reply[1].decode(errors="replace"))
    metrics = parse_metrics(texts)
    segments = None
    for url in urls:
        try:
            status, body = await _get(session, url.rstrip("/") + "/segments")
        except Exception as exc:
            errors.append(f"{url}/segments: {type(exc).__name__}")
            continue
        if status == 200:
            segments = parse_segments(orjson.loads(body))
            break
        errors.append(f"{url}/segments: HTTP {status}")
    return build_overview(urls, metrics, previous, segments, errors), metrics
