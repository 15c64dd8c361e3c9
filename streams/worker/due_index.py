"""Which customers the daily pass must evaluate: a due-day index per partition (#15, item 3).

The pass used to evaluate every stored customer at the start of every stream
day; for silent customers almost all of those evaluations change nothing.
After the pass evaluates a customer silent for a week
(:data:`streams.worker.pass_review.PLAN_AFTER_SILENT_DAYS`) it now asks
:func:`models.due.plan` for the first day anything can
change for them without a new event (a lifecycle or churn-level crossing, a
window expiry, a churn snapshot, a KPI move, a cluster move under the model
of the moment) and keeps that day here, with what the customer adds to the
pass's statistics and KPI sums and their next learner refresh day. Passes
before it skip the customer without reading them, except to take the weekly
refresh sample on its day (no evaluation). A pass on or after the due day
evaluates the customer from that day on (the days before it would change
nothing) and plans again.

The index is in memory and only an optimisation: an entry missing (a new
worker, a restart, a rebalance) means "evaluate at the next pass", as before.
Entries are forgotten whenever the plan may no longer hold:

* the customer's event, privacy request or rerouted event (:meth:`forget`);
* a new churn model (its scores, snapshots and the CLV's models move the due
  days: everyone is evaluated at the next pass) and a cluster model with other
  cluster ids (everyone meets the new clusters at once) (:meth:`clear`);
* a rebalance (another worker may have changed the customers meanwhile).

Decided, not forced: a refreshed cluster model with the *same* cluster ids
(the learner refits once per stream day) does not clear the index. A silent
customer meets refreshed centroids at their next due day — at the latest
their next churn snapshot (every ``SEGMENTER_CHURN_SNAPSHOT_EVERY_DAYS``, 15
days with the default horizon), which is a due day — instead of at the next
pass. Their placement then answers the
same question as a customer's with events: the clusters as of their last
evaluation. (Clearing daily would make every pass evaluate everyone again.)
``SEGMENTER_SWEEP_DUE_INDEX=false`` turns the index off (every pass evaluates
everyone, as before).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any

from models.due import Due
from streams.worker.sweep import CustomerStats

__all__ = ["SHARED_VALUES", "DueIndex", "Planned"]

SHARED_VALUES = 100_000  # distinct values the index keeps one copy of


@dataclass(frozen=True, slots=True)
class Planned:
    """A customer's plan, with what they add to a pass's statistics and KPI sums
    (unchanged until the plan is void), so a pass that skips them reads nothing."""

    due: Due
    stats: CustomerStats | None = None
    kpis: Any = None
    # the next learner refresh sample, which the pass takes without an evaluation
    # (the plan leaves it out: models.due.plan, ``refresh=False``)
    refresh_day: int | None = None


@dataclass
class DueIndex:
    """The due plans of the customers a worker's passes evaluated, per partition.

    Examples
    --------
    >>> index = DueIndex()
    >>> index.record(0, "c1", Due(12, "churn"))
    >>> index.skips(0, "c1", 11), index.skips(0, "c1", 12), index.skips(0, "c2", 11)
    (True, False, False)
    >>> index.since(0, "c1", 13, reviewed_through=5)  # evaluate from day 12 on
    11
    >>> index.forget(0, "c1")
    >>> index.skips(0, "c1", 11), index.planned(0, "c1")
    (False, None)

    A plan without a due day (an opted-out customer) skips every pass:

    >>> index.record(1, "c3", Due(None, "never")); index.skips(1, "c3", 10**6)
    True

    A full index keeps no new plans (those customers are evaluated at every
    pass, as without the index); a forgotten plan makes room:

    >>> small = DueIndex(capacity=1)
    >>> small.record(0, "c1", Due(9, "rules")); small.record(0, "c2", Due(9, "rules"))
    >>> small.skips(0, "c2", 5), len(small)
    (False, 1)
    """

    enabled: bool = True
    #: Customers kept at most (a plan with its statistics: ~0.6 kB).
    capacity: int = 250_000
    plans: dict[int, dict[str, Planned]] = field(default_factory=dict)
    _size: int = 0
    _values: dict[Any, Any] = field(default_factory=dict, repr=False)

    def planned(self, partition: int, customer_id: str) -> Due | None:
        """The customer's plan, ``None`` when there is none (evaluate)."""
        entry = self.plans.get(partition, {}).get(customer_id)
        return None if entry is None else entry.due

    def skipped(self, partition: int, customer_id: str, day: int) -> Planned | None:
        """The customer's entry if the pass of ``day`` may leave them alone."""
        entry = self.plans.get(partition, {}).get(customer_id)
        if entry is None or (entry.due.day is not None and entry.due.day <= day):
            return None
        return entry

    def skips(self, partition: int, customer_id: str, day: int) -> bool:
        """Whether the pass of ``day`` may leave the customer alone."""
        return self.skipped(partition, customer_id, day) is not None

    def since(self, partition: int, customer_id: str, day: int, reviewed_through: int) -> int:
        """The last day the customer is known to be up to date at, for the
        catch-up of the pass of ``day`` (``reviewed_through`` without a plan)."""
        due = self.planned(partition, customer_id)
        if due is None or due.day is None or due.day > day:
            return reviewed_through
        return max(reviewed_through, due.day - 1)

    def record(
        self,
        partition: int,
        customer_id: str,
        due: Due,
        stats: CustomerStats | None = None,
        kpis: Any = None,
        refresh_day: int | None = None,
    ) -> None:
        """Keep the plan made after the pass evaluated the customer, with their
        statistics and KPI contribution as the pass left them."""
        if not self.enabled:
            return
        plans = self.plans.setdefault(partition, {})
        if customer_id not in plans:
            if self._size >= self.capacity:
                return
            self._size += 1
        if stats is not None:
            segments, level, row, spend = stats
            segments = tuple((sys.intern(kind), sys.intern(name)) for kind, name in segments)
            stats = (self._shared(segments), self._shared(level), row, spend)
        if kpis is not None:  # (models.kpis.compact_contribution)
            members, flags, revenue, clv, log, tallies = kpis
            log = self._shared(tuple(self._shared(entry) for entry in log))
            kpis = (self._shared(members), flags, revenue, clv, log, tallies)
        plans[customer_id] = Planned(due, stats, kpis, refresh_day)

    def refreshed(self, partition: int, customer_id: str, refresh_day: int | None) -> None:
        """The pass took the customer's refresh sample; the next one is due then."""
        plans = self.plans.get(partition)
        entry = None if plans is None else plans.get(customer_id)
        if plans is not None and entry is not None:
            plans[customer_id] = replace(entry, refresh_day=refresh_day)

    def _shared(self, value: Any) -> Any:
        """``value``, or an equal one kept already: many customers have the same
        segments and the same transitions on the same days (a plan with
        statistics then takes ~0.6 kB instead of ~1.5: measured on the hot path tool's
        customers after a week of silence)."""
        shared = self._values
        found = shared.get(value)
        if found is not None:
            return found
        if len(shared) >= SHARED_VALUES:
            shared.clear()  # (old days' transitions: start again)
        shared[value] = value
        return value

    def forget(self, partition: int, customer_id: str) -> None:
        """The customer changed outside the pass: evaluate them at the next one."""
        plans = self.plans.get(partition)
        if plans and plans.pop(customer_id, None) is not None:
            self._size -= 1

    def clear(self) -> None:
        """Every plan is void (a new model, a rebalance)."""
        self.plans.clear()
        self._size = 0

    def __len__(self) -> int:
        return self._size
