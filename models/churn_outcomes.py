"""Delayed outcomes of churn scores: snapshots in the customer's state, labels H days later.

The worker keeps, in each customer's own record (``state["churn"]``), the
feature vector of the scored customer on a few days per horizon, and marks a
snapshot as soon as the outcome it waits for happens (a purchase -- or any
behavioural event, with ``label="activity"`` -- within ``[day, day + H)``).
With ``offset_days`` (default 0) the window is
``[day + offset, day + offset + H)``: "will the customer have stopped within
``offset`` days?" rather than "is the customer silent from now on?". When the
window has passed, the snapshot is released as a labelled example
``[vector, churned, day]`` for the single learner and dropped from the
record. So:

* the cost per event is a loop over at most ``ceil(H / every) + 1`` pending
  snapshots, and a record holds that many short vectors (~8 numbers each);
* the snapshots are written with the features, in the same table write, so a
  crash or a replay takes and releases the same snapshots (deterministic);
* erasing or opting out a customer deletes the record, pending snapshots
  included: nothing of theirs reaches the learner afterwards.

Snapshots are taken only at the *start* of a day (the evaluation the daily
sweep, or the catch-up before an event, makes at 00:00 UTC), before any of
that day's events is applied, on every ``every``-th day of a phase drawn
from the customer id (which spreads the work over the days).

Examples
--------
>>> t = ChurnTracking(horizon_days=30, label="activity", snapshot_every=1)
>>> churn = {}
>>> t.start_of_day(churn, "c1", 100, [0.5, 0.1])  # (released, changed)
([], True)
>>> t.observe(churn, "browsing", 103 * 86_400_000)
>>> t.start_of_day(churn, "c1", 130, [0.2, 0.0])[0]  # active in the horizon: not churned
[[[0.5, 0.1], 0, 100]]
>>> t.start_of_day(churn, "c1", 160, [0.2, 0.0])[0]  # silent since day 130: churned
[[[0.2, 0.0], 1, 130]]
>>> t.start_of_day(churn, "c1", 160, [0.2, 0.0])  # the same day again: nothing
([], False)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from models.customer import ChurnState
from models.eventtime import MS_PER_DAY
from models.topics import BEHAVIOUR_TOPICS

__all__ = ["ChurnTracking"]

_PENDING: Final = "snap"  # (ChurnState["snap"])


@dataclass(frozen=True)
class ChurnTracking:
    """When to snapshot, what counts as an outcome, and how long to wait.

    Parameters
    ----------
    horizon_days
        H: the outcome is "no purchase (or activity) in ``[day, day + H)``"
        (shifted by ``offset_days``).
    label
        ``"purchase"``: only purchases count as activity; ``"activity"``:
        any purchase, browsing, support or feedback event does.
    snapshot_every
        Days between two snapshots of a customer (default ``ceil(H / 6)``):
        at most ``(offset + H) / every + 1`` pending per customer.
    offset_days
        Days between the snapshot and the start of its outcome window.
    """

    horizon_days: int = 90
    label: str = "purchase"
    snapshot_every: int | None = None
    offset_days: int = 0

    def __post_init__(self) -> None:
        if self.horizon_days < 1:
            raise ValueError("horizon_days must be >= 1")
        if self.label not in ("purchase", "activity"):
            raise ValueError("label must be 'purchase' or 'activity'")
        if self.snapshot_every is not None and self.snapshot_every < 1:
            raise ValueError("snapshot_every must be >= 1")
        if self.offset_days < 0:
            raise ValueError("offset_days must be >= 0")

    @property
    def question(self) -> tuple[int, str, int]:
        """``(H, label, offset)``, as :attr:`models.churn_model.ChurnModel.question`."""
        return (self.horizon_days, self.label, self.offset_days)

    @property
    def wait_days(self) -> int:
        """Days from a snapshot to its release: ``offset + H``."""
        return self.offset_days + self.horizon_days

    @property
    def every(self) -> int:
        """Days between snapshots."""
        if self.snapshot_every is not None:
            return self.snapshot_every
        return max(1, -(-self.horizon_days // 6))

    def counts(self, topic: str) -> bool:
        """Whether an event of ``topic`` is the activity the label waits for."""
        return topic == "purchases" if self.label == "purchase" else topic in BEHAVIOUR_TOPICS

    def is_snapshot_day(self, customer_id: str, day: int) -> bool:
        """Whether ``day`` is one of the customer's snapshot days.

        >>> t = ChurnTracking(horizon_days=60)
        >>> sum(t.is_snapshot_day("c7", d) for d in range(0, 100))
        10
        """
        every = self.every
        if every == 1:
            return True
        digest = hashlib.blake2b(customer_id.encode(), digest_size=4).digest()
        return (day + int.from_bytes(digest, "big")) % every == 0

    def due(self, churn: ChurnState, customer_id: str, day: int) -> bool:
        """Whether :meth:`start_of_day` at ``day`` would release or take a snapshot.

        >>> t = ChurnTracking(horizon_days=30, snapshot_every=5)
        >>> churn = {}
        >>> [d for d in range(100, 111) if t.due(churn, "c1", d)]
        [101, 106]
        """
        pending = churn.get(_PENDING)
        if pending and pending[0][0] <= day - self.wait_days:
            return True
        return self.is_snapshot_day(customer_id, day) and not (pending and pending[-1][0] >= day)

    def next_due_day(self, churn: ChurnState, customer_id: str, day: int) -> int:
        """The first day after ``day`` whose start releases or takes a snapshot.

        A timer for the tracking alone (the level can change on any day of
        silence: see ``docs/churn.md``, "When churn output changes").

        >>> t = ChurnTracking(horizon_days=30, snapshot_every=5)
        >>> churn = {"snap": [[90, [0.1], 0]]}
        >>> t.next_due_day(churn, "c1", 100), t.next_due_day(churn, "c1", 120)
        (101, 121)
        """
        every = self.every
        if every == 1:
            return day + 1
        digest = hashlib.blake2b(customer_id.encode(), digest_size=4).digest()
        nxt = day + 1 + (-(day + 1 + int.from_bytes(digest, "big"))) % every
        pending = churn.get(_PENDING)
        if pending:
            nxt = min(nxt, max(day + 1, pending[0][0] + self.wait_days))
        return nxt

    def start_of_day(
        self, churn: ChurnState, customer_id: str, day: int, vector: list[float]
    ) -> tuple[list[list[Any]], bool]:
        """At 00:00 of ``day``: release matured snapshots, maybe take one.

        Returns the released examples ``[vector, churned (0/1), snapshot day]``
        (``churned`` = no counted activity in ``[day, day + H)``) and whether
        ``churn`` changed (so must be written). Idempotent for the same day: a
        repeated call releases and takes nothing more.
        """
        pending: list[list[Any]] = churn.get(_PENDING) or []
        released: list[list[Any]] = []
        if pending:
            due = day - self.wait_days
            keep = []
            for snap in pending:
                if snap[0] <= due:
                    released.append([snap[1], 0 if snap[2] else 1, snap[0]])
                else:
                    keep.append(snap)
            pending = keep
        taken = self.is_snapshot_day(customer_id, day) and not (pending and pending[-1][0] >= day)
        if taken:
            pending.append([day, [round(v, 4) for v in vector], 0])
        if pending:
            churn[_PENDING] = pending
        else:
            churn.pop(_PENDING, None)
        return released, bool(released) or taken

    def observe(self, churn: ChurnState, topic: str, ts_ms: int) -> None:
        """An event of ``topic`` at ``ts_ms``: mark the snapshots whose window holds it."""
        pending = churn.get(_PENDING)
        if not pending or not self.counts(topic):
            return
        day = ts_ms // MS_PER_DAY
        offset, horizon = self.offset_days, self.horizon_days
        for snap in pending:
            if snap[0] + offset <= day < snap[0] + offset + horizon:
                snap[2] = 1

    @staticmethod
    def pending(churn: ChurnState) -> int:
        """How many snapshots wait for their outcome."""
        return len(churn.get(_PENDING) or ())
