"""How the live view looks: rich panels for a terminal, one-line summaries for logs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.columns import Columns
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streams.ops.top.collect import CHURN_LEVELS, Overview, SegmentRow
from streams.ops.top.notable import NotableChange

__all__ = ["frame", "notable_line", "summary_line"]

LEVEL_STYLE = {"high": "bold red", "medium": "yellow", "low": "green"}
TYPE_ORDER = ("lifecycle", "value", "nps", "cluster")
ROWS_PER_TYPE = 8
HINT = "Ctrl-C quits · segmenter customer ID · segmenter tail segment-changes --all (every change)"


def _num(value: float | None, digits: int = 0) -> str:
    """Thousands separators; '-' when unknown.

    >>> _num(2950.4), _num(None), _num(0.25, 2)
    ('2,950', '-', '0.25')
    """
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _signed(n: int) -> str:
    return f"+{n:,}" if n > 0 else f"{n:,}" if n < 0 else "±0"


def _clock(seconds: float | None) -> str:
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _types(overview: Overview) -> list[str]:
    known = [t for t in TYPE_ORDER if t in overview.segments]
    return known + sorted(t for t in overview.segments if t not in TYPE_ORDER)


def _model(overview: Overview) -> str:
    """The cluster model in use: version and k (none while the learner warms up)."""
    if overview.model_version is None:
        return "none yet"
    if not overview.clusters:
        return f"{overview.model_version} · warming up (no clusters yet)"
    return f"{overview.model_version} · k={overview.clusters}"


def _move(change: NotableChange) -> str:
    what = "churn" if change.kind == "churn" else change.kind
    return f"{what} {change.previous or '∅'} → {change.current}"


def summary_line(overview: Overview, notable_total: int, cluster_moves: int = 0) -> str:
    """One line for logs (stdout is not a terminal).

    >>> from streams.ops.top.collect import Overview, SegmentRow
    >>> o = Overview(urls=["u"], reachable=1, events_per_s=2950.0, lag=12.0, customers=280,
    ...              churn_levels={"low": 250, "high": 30}, model_version="km-3", clusters=4,
    ...              stream_clock_s=None,
    ...              segments={"lifecycle": [SegmentRow("lifecycle", "active", "", 120, 12)]})
    >>> summary_line(o, 5, 2)
    'events/s 2,950 · lag 12 · customers 280 · churn low 250 medium 0 high 30 · model km-3 · k=4 · notable 5 (2 cluster moves) · lifecycle: active 120 (+12)'
    """  # noqa: E501
    parts = [
        f"events/s {_num(overview.events_per_s)}",
        f"lag {_num(overview.lag)}",
        f"customers {_num(overview.customers)}",
        "churn " + " ".join(f"{lv} {overview.churn_levels.get(lv, 0):,}" for lv in CHURN_LEVELS),
        f"model {_model(overview)}",
        f"notable {notable_total:,} ({cluster_moves:,} cluster moves)",
    ]
    for seg_type in _types(overview):
        rows = overview.segments[seg_type]
        shown = ", ".join(f"{r.id} {r.size:,} ({_signed(r.growth_1d)})" for r in rows if r.size)
        if shown:
            parts.append(f"{seg_type}: {shown}")
    if overview.reachable < len(overview.urls):
        parts.append(f"unreachable: {len(overview.urls) - overview.reachable}")
    return " · ".join(parts)


def notable_line(change: NotableChange) -> str:
    """One line per notable change, for logs.

    >>> from streams.ops.top.notable import NotableChange
    >>> notable_line(NotableChange("e", "2026-01-02T00:00:00.000Z", "c1", "churn", "low",
    ...                            "high", ("no activity for 40 days",), "alert"))
    'notable: 2026-01-02T00:00:00.000Z c1 churn low → high: no activity for 40 days'
    """
    reasons = "; ".join(change.reasons[:2])
    return f"notable: {change.ts} {change.customer_id} {_move(change)}" + (
        f": {reasons}" if reasons else ""
    )


def _segment_table(seg_type: str, rows: list[SegmentRow], limit: int = ROWS_PER_TYPE) -> Table:
    table = Table(title=seg_type, title_justify="left", box=None, pad_edge=False, expand=False)
    table.add_column("segment", no_wrap=True, max_width=18)
    table.add_column("size", justify="right")
    table.add_column("1d", justify="right")
    for row in rows[:limit]:
        style = "red" if row.id in ("at_risk", "lapsed") else ""
        growth = _signed(row.growth_1d)
        table.add_row(Text(row.id, style=style), f"{row.size:,}", growth)
    if len(rows) > limit:
        table.add_row(f"… {len(rows) - limit} more", "", "")
    return table


def _churn_table(levels: dict[str, int]) -> Table:
    total = sum(levels.values()) or 1
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("level")
    table.add_column("customers", justify="right")
    table.add_column("share")
    for level in CHURN_LEVELS:
        n = levels.get(level, 0)
        bar = "█" * round(8 * n / total)
        style = LEVEL_STYLE[level]
        table.add_row(Text(level, style=style), f"{n:,}", Text(bar, style=style))
    return table


def _notable_table(changes: list[NotableChange]) -> Table:
    table = Table(box=None, pad_edge=False, expand=True, show_header=False)
    table.add_column("when", no_wrap=True)
    table.add_column("customer", no_wrap=True)
    table.add_column("change", no_wrap=True)
    table.add_column("why", ratio=1, overflow="ellipsis", no_wrap=True)
    for change in changes:
        style = "bold red" if change.severity == "alert" else "cyan"
        table.add_row(
            change.ts[:16].replace("T", " "),
            change.customer_id,
            Text(_move(change), style=style),
            "; ".join(change.reasons[:2]),
        )
    if not changes:
        table.add_row("", "", Text("none yet", style="dim"), "")
    return table


def frame(
    overview: Overview,
    changes: list[NotableChange],
    notable_total: int,
    kafka_note: str | None = None,
    height: int = 50,
) -> Any:
    """The whole view as one rich renderable, fitted to a terminal of ``height`` lines."""
    # Fixed lines: header panel 3, segments panel borders and headings 4, notable
    # panel borders 2, hint 1, and a few lines printed above the view.
    spare = max(0, height - 18)
    segment_rows = max(3, min(ROWS_PER_TYPE, spare // 2))
    # Kept in arrival order, shown newest in event time first: a replay or a
    # catch-up delivers changes out of event-time order.
    changes = sorted(changes, key=lambda c: c.ts, reverse=True)[: max(3, spare - segment_rows)]
    workers = f"{overview.reachable}/{len(overview.urls)} workers"
    header = Text.assemble(
        ("events/s ", "dim"),
        (_num(overview.events_per_s), "bold"),
        ("   lag ", "dim"),
        (_num(overview.lag), "bold"),
        ("   customers ", "dim"),
        (_num(overview.customers), "bold"),
        ("   model ", "dim"),
        (_model(overview), "bold"),
        ("   stream clock ", "dim"),
        (_clock(overview.stream_clock_s), ""),
    )
    top = Panel(
        header,
        title=f"Segmenter · {', '.join(overview.urls)} · {workers}",
        title_align="left",
    )
    tables = [_segment_table(t, overview.segments[t], segment_rows) for t in _types(overview)]
    segments = Panel(
        Columns(tables, padding=(0, 3)) if tables else Text("no segment statistics yet", "dim"),
        title="Segments (customers, change over one day)",
        title_align="left",
    )
    churn = Panel(_churn_table(overview.churn_levels), title="Churn risk", title_align="left")
    middle = Table.grid(expand=True)
    middle.add_column(ratio=4)
    middle.add_column(ratio=1, min_width=28)
    middle.add_row(segments, churn)
    subtitle = kafka_note or f"{notable_total:,} since start"
    notable = Panel(
        _notable_table(changes),
        title="Latest notable changes (at risk, lapsed, churn high, cluster moves)",
        title_align="left",
        subtitle=subtitle,
        subtitle_align="right",
    )
    parts: list[Any] = [top, middle, notable]
    if overview.errors:
        parts.append(Text("; ".join(overview.errors[:3]), style="yellow"))
    parts.append(Text(HINT, style="dim"))
    return Group(*parts)
