"""The changes worth a person's attention, from the output topics.

Not every change: a new customer's first assignments (``"initial": true``) and
small moves (value tiers, nps) are left to ``segmenter tail``. Notable are a
customer entering ``at_risk`` or ``lapsed``, entering churn ``high``, and a
move from one cluster to another, with the reasons. Each change is kept once,
whatever how often it was sent (by ``event_id``).
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["NotableChange", "NotableFeed", "notable"]

ALERT_STAGES = frozenset({"at_risk", "lapsed"})


@dataclass(frozen=True)
class NotableChange:
    """One change shown in the view."""

    event_id: str
    ts: str  # event time, RFC 3339
    customer_id: str
    kind: str  # "lifecycle", "churn" or "cluster"
    previous: str | None
    current: str
    reasons: tuple[str, ...]
    severity: str  # "alert" (at risk, lapsed, churn high) or "info" (cluster move)


def notable(topic: str, record: dict[str, Any]) -> NotableChange | None:
    """The change as shown in the view, or ``None`` when it is not notable.

    >>> notable("churn-risk", {"event_id": "e1", "ts": "2026-01-02T00:00:00.000Z",
    ...     "customer_id": "c1", "level": "high", "previous_level": "medium",
    ...     "initial": False, "reasons": ["no activity for 40 days"]}).current
    'high'
    >>> notable("segment-changes", {"event_id": "e2", "ts": "t", "customer_id": "c1",
    ...     "segment_type": "value", "previous": None, "current": "none",
    ...     "initial": True, "reasons": []}) is None
    True
    """
    if record.get("initial"):
        return None

    def change(kind: str, previous: Any, current: str, severity: str) -> NotableChange:
        return NotableChange(
            event_id=str(record.get("event_id")),
            ts=str(record.get("ts")),
            customer_id=str(record.get("customer_id")),
            kind=kind,
            previous=None if previous is None else str(previous),
            current=current,
            reasons=tuple(str(r) for r in record.get("reasons") or ()),
            severity=severity,
        )

    if topic.endswith("churn-risk"):
        level, before = record.get("level"), record.get("previous_level")
        if level == "high" and before != "high":
            return change("churn", before, "high", "alert")
        return None
    seg_type = record.get("segment_type")
    before, now = record.get("previous"), record.get("current")
    if seg_type == "lifecycle" and now in ALERT_STAGES and before != now:
        return change("lifecycle", before, str(now), "alert")
    if seg_type == "cluster" and before is not None and now is not None and before != now:
        return change("cluster", before, str(now), "info")
    return None


class NotableFeed:
    """The latest notable changes, each once (a re-sent change is recognised by its id).

    >>> feed = NotableFeed(keep=2)
    >>> record = {"event_id": "e1", "ts": "t", "customer_id": "c1", "level": "high",
    ...           "previous_level": "low", "reasons": []}
    >>> [feed.add("churn-risk", record), feed.add("churn-risk", record)]
    [True, False]
    >>> len(feed), feed.seen_total
    (1, 1)
    """

    def __init__(self, keep: int = 12, remember: int = 100_000) -> None:
        self.keep = keep
        self.remember = remember
        self._latest: deque[NotableChange] = deque(maxlen=keep)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.seen_total = 0  # notable changes seen since the start, each once
        self.by_kind: Counter[str] = Counter()  # the same, by kind (lifecycle, churn, cluster)

    def add(self, topic: str, record: dict[str, Any]) -> bool:
        """Add a record of an output topic; True when it is a new notable change."""
        change = notable(topic, record)
        if change is None or change.event_id in self._seen:
            return False
        self._seen[change.event_id] = None
        if len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        self._latest.append(change)
        self.seen_total += 1
        self.by_kind[change.kind] += 1
        return True

    @property
    def latest(self) -> list[NotableChange]:
        """The kept changes, newest first."""
        return list(reversed(self._latest))

    def __len__(self) -> int:
        return len(self._latest)

    def __iter__(self) -> Iterator[NotableChange]:
        return iter(self.latest)
