"""Runs the churn learner on the worker that owns the training partition.

The worker's glue around :class:`streams.worker.churn_learner.ChurnLearnerHost`:
the learner is resumed from the latest churn model on ``segment-models``
when this worker becomes the owner of ``segment-training`` (and dropped when
it stops being it), learns the outcomes in the training batches, and is
stepped by a timer with the stream clock; the base's BTYD and spend tables
are the sums of the partitions' tables that the sweeps publish on
``stream-clock``. All
calls run on the learner's own thread, one at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from models.btyd_summary import BTYDSummary
from models.eventtime import day_of
from models.spend_summary import SpendSummary
from streams.worker.churn_learner import ChurnLearnerHost
from streams.worker.runtime import Runtime

__all__ = ["ChurnLearnerRunner", "base_spend", "base_summary"]

log = logging.getLogger(__name__)


def base_summary(rt: Runtime) -> BTYDSummary:
    """The whole base's BTYD table: the latest table of every partition, summed.

    >>> from types import SimpleNamespace
    >>> part = BTYDSummary(); part.add(0, 0, 10)
    >>> rt = SimpleNamespace(remote_stats={"p0": {"btyd": part.to_dict()}, "p1": {}})
    >>> base_summary(rt).n_customers
    1
    """
    return BTYDSummary.combined(
        BTYDSummary.from_dict(stats["btyd"])
        for stats in list(rt.remote_stats.values())
        if stats.get("btyd")
    )


def base_spend(rt: Runtime) -> SpendSummary:
    """The whole base's spend table (Gamma-Gamma): every partition's latest, summed.

    >>> from types import SimpleNamespace
    >>> part = SpendSummary(); part.add(2, 40.0)
    >>> rt = SimpleNamespace(remote_stats={"p0": {"spend": part.to_dict()}, "p1": {}})
    >>> base_spend(rt).n_customers
    1
    """
    return SpendSummary.combined(
        SpendSummary.from_dict(stats["spend"])
        for stats in list(rt.remote_stats.values())
        if stats.get("spend")
    )


class ChurnLearnerRunner:
    """The churn learner of this worker, while it owns the training partition."""

    def __init__(self, rt: Runtime, owns_training: Callable[[], bool]) -> None:
        self.rt = rt
        self.owns_training = owns_training
        self.host: ChurnLearnerHost | None = None

    def _settings(self) -> dict[str, Any]:
        s = self.rt.settings
        return {
            "horizon_days": s.churn_horizon_days,
            "label": s.churn_label,
            "offset_days": s.churn_offset_days,
            "refit_days": s.churn_refit_days,
            "min_labels": s.churn_min_outcomes,
            "prior_sd": s.churn_prior_sd,
            "memory": s.churn_memory_outcomes,
            "warmup_days": s.churn_warmup_days,
            "scorer": self.rt.processor.scorer,
        }

    def _ensure(self) -> ChurnLearnerHost:
        if self.host is None:
            self.host = ChurnLearnerHost.restore(self.rt.churn_message, **self._settings())
        return self.host

    def learn(self, items: list[dict[str, Any]]) -> int:
        """Learn the churn outcomes of one training batch."""
        if not any("churn" in item for item in items):
            return 0
        return self._ensure().learn(items)

    def step(self) -> dict[str, Any] | None:
        """Refit when due in stream time; the message to publish, if one is due."""
        if not self.owns_training():
            self.host = None  # the next owner resumes from the published state
            return None
        now = self.rt.clock.now_ms
        if now <= 0 or not any(s.get("btyd") for s in list(self.rt.remote_stats.values())):
            return None  # no partition's table heard yet (a start): do not spend the refit
        host = self._ensure()
        if not host.tick(day_of(now), lambda: base_summary(self.rt), lambda: base_spend(self.rt)):
            return None
        model = host.publish()
        log.info(
            "churn model %s published (learned=%s, outcomes=%s)",
            model.version_label,
            model.learned,
            model.validation.get("labels"),
        )
        return host.message(model)
