"""``segmenter segments`` and ``segmenter experiments``: a worker's reports as tables.

Both read the worker's HTTP API (``GET /segments``, ``GET /experiments``) at
``SEGMENTER_WEB_HOST``/``SEGMENTER_WEB_PORT`` (any worker answers for the whole
base), with the bearer token when ``SEGMENTER_API_TOKEN`` is set. Expected
failures (no worker, a refusal) are one line (:class:`streams.ops.cli_errors.CliError`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console
from rich.table import Table

from streams.ops.cli_errors import CliError
from streams.settings import Settings
from streams.worker.http_security import authorization_header

__all__ = ["fetch", "render_experiments", "render_segments", "worker_url"]

DASH = "-"


def worker_url(settings: Settings) -> str:
    """Base URL of the worker the settings name (a worker on every interface: local).

    >>> worker_url(Settings(web_host="0.0.0.0", web_port=6070))
    'http://127.0.0.1:6070'
    """
    host = settings.web_host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.web_port}"


def fetch(
    settings: Settings, path: str, *, timeout: float = 30.0, not_found: str | None = None
) -> Any:
    """``GET path`` from the worker, as JSON; a :class:`CliError` when that fails.

    ``not_found`` is the message of a 404 (exit status 1: an answer, not a
    failure); without it a 404 is reported like any other refusal.
    """
    base = worker_url(settings)
    token = settings.api_token.get_secret_value() if settings.api_token else None
    request = urllib.request.Request(base + path, headers=authorization_header(token))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and not_found is not None:
            raise CliError(f"{not_found} on {base}", 1) from exc
        detail = " ".join(exc.read().decode(errors="replace").split())[:200]
        raise CliError(f"the worker on {base} answered {exc.code} to {path}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(
            f"no worker answers on {base} ({reason}); is `segmenter worker` running with "
            "the same SEGMENTER_WEB_HOST / SEGMENTER_WEB_PORT?"
        ) from exc


def _share(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.1f}%"


def _money(value: float | None) -> str:
    return DASH if value is None else f"{value:,.2f}"


def _number(value: float | None, digits: int = 0) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def render_segments(document: dict[str, Any], console: Console, segment_type: str | None) -> None:
    """The segment catalogue with every segment's KPIs, one row a segment."""
    context = document.get("kpis") or {}
    title = f"segments as of {context.get('as_of_day') or DASH} (stream time)"
    if not context.get("complete"):
        title += " — KPIs not published for every partition yet"
    table = Table(
        "type", "id", "label", "customers", "in 30d", "out 30d", "active 30d",
        "revenue 30d", "CLV 365d", "NPS", "conversion", "churn high",
        title=title,
    )  # fmt: skip
    for column in table.columns[3:]:
        column.justify = "right"
    for segment in document.get("segments", []):
        if segment_type is not None and segment["type"] != segment_type:
            continue
        k = segment.get("kpis") or {}
        table.add_row(
            segment["type"],
            str(segment["id"]),
            str(segment.get("label") or "")[:40],
            _number(k.get("customers")),
            _number(k.get("entered_30d")),
            _number(k.get("exited_30d")),
            _share(k.get("active_30d_share")),
            _money(k.get("revenue_30d")),
            _money(k.get("clv_365d_mean")),
            _number(k.get("nps"), 1),
            _share(k.get("conversion_30d")),
            _share(k.get("churn_high_share")),
        )
    console.print(table)


_OUTCOMES = (
    ("active_share", "active", _share),
    ("purchase_share", "purchased", _share),
    ("revenue_per_customer", "revenue / customer", _money),
    ("churn_high_share", "churn high", _share),
)


def _uplift(found: dict[str, Any], outcome: str) -> tuple[str, str, str]:
    estimate, interval = found.get("estimate"), found.get("ci95")
    if estimate is None or interval is None:
        return DASH, DASH, "not enough completed windows"
    if outcome == "revenue_per_customer":
        shown = f"{estimate:+,.2f}"
        ci = f"[{interval[0]:+,.2f}, {interval[1]:+,.2f}]"
    else:
        shown = f"{100 * estimate:+.1f} pts"
        ci = f"[{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}]"
    verdict = "significant" if found.get("significant") else "not significant"
    return shown, ci, verdict


def render_experiments(document: dict[str, Any], console: Console) -> None:
    """Every experiment: its arms' sizes and outcomes, and the uplifts."""
    experiments = document.get("experiments") or []
    if not experiments:
        console.print("no experiments configured (the `experiments` section of the segments YAML)")
        return
    for experiment in experiments:
        observed = experiment.get("holdout_share_observed")
        console.print(
            f"[bold]{experiment['name']}[/]  segment {experiment['segment']}, holdout "
            f"{100 * experiment['holdout']:.0f}% (observed {_share(observed)}), outcome window "
            f"{experiment['window_days']} days"
        )
        if experiment.get("description"):
            console.print(f"  {experiment['description']}")
        arms = Table("arm", "entered", "in window", "completed", *(o[1] for o in _OUTCOMES))
        for column in arms.columns[1:]:
            column.justify = "right"
        for name in ("treatment", "holdout"):
            arm = experiment["arms"][name]
            outcomes = arm["outcomes"]
            arms.add_row(
                name,
                _number(arm["customers"]),
                _number(arm["in_window"]),
                _number(arm["completed"]),
                *(show(outcomes.get(key)) for key, _, show in _OUTCOMES),
            )
        console.print(arms)
        uplift = Table("outcome", "uplift (treatment - holdout)", "95% CI", "")
        for key, label, _ in _OUTCOMES:
            uplift.add_row(label, *_uplift(experiment["uplift"][key], key))
        console.print(uplift)
