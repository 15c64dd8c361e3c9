"""The single churn learner: BTYD refits in stream time, weights from delayed outcomes.

One learner for the whole base, like the cluster learner: the worker that owns
the one-partition ``segment-training`` topic runs it (``streams.worker.app``), and
``segmenter evaluate`` runs the very same object in-process, stepped by the
replay's stream clock (``streams.tools.evaluation``). It

* learns every matured outcome workers send (``{"churn": [vector, churned,
  day]}``, see :mod:`models.churn_outcomes`) with
  :class:`models.churn_model.OnlineChurnLearner` (progressive validation:
  each outcome is predicted before it is learnt), except the outcomes of
  snapshots taken in the first ``warmup_days`` of the stream: a customer
  whose history began before the stream did has truncated windowed features
  and BTYD statistics until the longest window (90 days) has passed, and
  learning from those snapshots teaches the model a world that the scores
  never see again;
* refits BG/NBD and Pareto/NBD every ``refit_days`` of stream time on the
  base's summary table (the sum of the partitions' tables, which every sweep
  rebuilds from the customers it holds), and with them the Gamma-Gamma spend
  model of the CLV (:mod:`models.clv`) on the base's spend table (every day
  until its first fit: it needs 50 repeat customers);
* publishes a :class:`models.churn_model.ChurnModel` -- the learned weights
  once ``min_labels`` outcomes were learnt, the prior before -- after each
  refit and every ``publish_every`` outcomes, as plain JSON under the key
  ``churn`` of the compacted ``segment-models`` topic, together with the
  learner's own state and the spend model (``spend``), so a learner that
  moves to another worker resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.btyd_summary import BTYDSummary
from models.churn import ChurnScorer
from models.churn_model import BTYDFit, ChurnModel, OnlineChurnLearner, fit_btyd
from models.gamma_gamma import GammaGammaParams, fit_from_summary
from models.spend_summary import SpendSummary

__all__ = ["CHURN_MODEL_KEY", "ChurnLearnerHost"]

log = logging.getLogger(__name__)

#: Key of the churn model's records on the segment-models topic.
CHURN_MODEL_KEY = b"churn"


@dataclass
class ChurnLearnerHost:
    """Owns the churn learner's state; publishes :class:`ChurnModel` messages.

    Parameters
    ----------
    horizon_days, label, offset_days
        The question (must match the workers' tracking): no ``label`` activity
        in the ``horizon_days`` starting ``offset_days`` after the score.
    refit_days
        Days of stream time between two BTYD fits.
    min_labels
        Outcomes learnt before the learned weights replace the prior.
    prior_sd, bias_sd, memory
        The online Bayesian logistic regression's prior spread around the
        hand-set weights and bias, and its memory in outcomes
        (:class:`models.churn_model.OnlineChurnLearner`).
    warmup_days
        Snapshots taken before ``start_day + warmup_days`` are not learnt
        (counted in ``warmup_skipped``).
    start_day
        The first day of the stream this learner knows of: the first day it
        was stepped at, or the earliest snapshot day it received, whichever is
        earlier (persisted with the model).
    publish_every
        Outcomes learnt between two publications (besides each refit).
    """

    horizon_days: int = 90
    label: str = "purchase"
    offset_days: int = 0
    refit_days: int = 7
    min_labels: int = 2000
    prior_sd: float = 1.0
    bias_sd: float = 5.0
    memory: int = 50_000
    warmup_days: int = 90
    start_day: int | None = None
    warmup_skipped: int = 0
    publish_every: int = 5000
    learner: OnlineChurnLearner | None = None
    fit: BTYDFit | None = None
    revision: int = 0
    last_refit_day: int | None = None
    unpublished: int = 0
    refitted: bool = False
    scorer: ChurnScorer = field(default_factory=ChurnScorer)
    # Gamma-Gamma spend model of the CLV, fitted with the BTYD models.
    spend: GammaGammaParams | None = None
    last_spend_day: int | None = None

    def __post_init__(self) -> None:
        if self.learner is None:
            self.learner = OnlineChurnLearner(
                prior_sd=self.prior_sd,
                bias_sd=self.bias_sd,
                memory=self.memory,
                min_labels=self.min_labels,
            )

    # ------------------------------------------------------------- restore
    @classmethod
    def restore(cls, message: Mapping[str, Any] | None, **settings: Any) -> ChurnLearnerHost:
        """Resume from the latest published message (or start afresh).

        A message of another horizon or label (the settings changed) is not
        resumed: its outcomes answered another question.
        """
        host = cls(**settings)
        if not message:
            return host
        try:
            model = ChurnModel.from_dict(message["model"])
            if model.question != (host.horizon_days, host.label, host.offset_days):
                log.warning(
                    "churn model on the topic answers %s, settings ask %s: starting afresh",
                    model.question,
                    (host.horizon_days, host.label, host.offset_days),
                )
                return host
            host.learner = OnlineChurnLearner.from_dict(message["learner"])
            host.fit = model.btyd if model.btyd.day is not None else None
            host.revision = model.revision
            last = message.get("last_refit_day")
            host.last_refit_day = None if last is None else int(last)
            start = message.get("start_day")
            host.start_day = None if start is None else int(start)
            host.warmup_skipped = int(message.get("warmup_skipped", 0))
            spend = message.get("spend")
            host.spend = None if spend is None else GammaGammaParams.from_dict(spend)
            host.last_spend_day = host.last_refit_day if host.spend is not None else None
        except (KeyError, TypeError, ValueError):
            log.exception("cannot resume the churn learner; starting afresh")
            return cls(**settings)
        return host

    # --------------------------------------------------------------- learn
    def learn(self, items: list[dict[str, Any]]) -> int:
        """Learn the churn outcomes among ``items``; return how many."""
        assert self.learner is not None
        n = 0
        for item in items:
            example = item.get("churn")
            if example is None:
                continue
            vector, churned, day = example[0], example[1], int(example[2])
            if self.start_day is None or day < self.start_day:
                self.start_day = day
            if day < self.start_day + self.warmup_days:
                self.warmup_skipped += 1
                continue
            self.learner.learn_one(vector, bool(churned))
            n += 1
        self.unpublished += n
        return n

    def refit_due(self, day: int) -> bool:
        """Whether ``refit_days`` of stream time passed since the last fit."""
        return self.last_refit_day is None or day >= self.last_refit_day + self.refit_days

    def refit(self, summary: BTYDSummary, day: int) -> bool:
        """Fit BG/NBD and Pareto/NBD on ``summary`` as of ``day``; whether it changed."""
        self.last_refit_day = day
        try:
            fitted = fit_btyd(summary, day, self.fit)
        except Exception:  # a numerical failure keeps the previous fit
            log.exception("BTYD refit failed; keeping the previous parameters")
            return False
        if fitted is None:
            return False
        self.fit = fitted
        self.refitted = True
        return True

    def spend_due(self, day: int) -> bool:
        """Whether the spend model is refitted at ``day``: with every BTYD refit, and
        every day until its first fit (a young base has too few repeat customers)."""
        if self.spend is None:
            return self.last_spend_day is None or day > self.last_spend_day
        return self.last_spend_day is None or day >= self.last_spend_day + self.refit_days

    def refit_spend(self, summary: SpendSummary, day: int) -> bool:
        """Fit the Gamma-Gamma spend model on ``summary``; whether it changed."""
        self.last_spend_day = day
        try:
            fitted = fit_from_summary(summary, initial=self.spend, version=f"d{day}")
        except Exception:  # a numerical failure keeps the previous fit
            log.exception("Gamma-Gamma refit failed; keeping the previous parameters")
            return False
        if fitted is None:
            return False
        self.spend = fitted
        self.refitted = True
        return True

    def tick(
        self,
        day: int,
        summary: Callable[[], BTYDSummary],
        spend: Callable[[], SpendSummary] | None = None,
    ) -> bool:
        """Advance to stream ``day``: refit if due; whether a publication is due.

        ``summary`` and ``spend`` (the base's spend table; ``None``: no spend
        model) are called only when a refit is due (building them costs a pass
        over the partitions' tables).
        """
        if self.start_day is None or day < self.start_day:
            self.start_day = day
        if self.refit_due(day):
            self.refit(summary(), day)
        if spend is not None and self.spend_due(day):
            self.refit_spend(spend(), day)
        return self.should_publish()

    def should_publish(self) -> bool:
        return self.refitted or self.unpublished >= self.publish_every

    # ------------------------------------------------------------- publish
    def model(self) -> ChurnModel:
        """The model to publish now: once ready, the learner's selected model
        (learned weights or the recalibrated prior), else the prior."""
        learner = self.learner
        assert learner is not None
        ready = learner.ready
        weights, bias = learner.published() if ready else (None, self.scorer.bias)
        return ChurnModel(
            weights=weights,
            bias=bias,
            btyd=self.fit,
            horizon_days=self.horizon_days,
            label=self.label,
            offset_days=self.offset_days,
            revision=self.revision,
            learned=ready,
            validation={**learner.validation(), "warmup_skipped": self.warmup_skipped},
            scorer=self.scorer,
        )

    def publish(self) -> ChurnModel:
        """Bump the revision and return the model to install/publish."""
        self.revision += 1
        self.unpublished = 0
        self.refitted = False
        return self.model()

    def message(self, model: ChurnModel) -> dict[str, Any]:
        """The record published under :data:`CHURN_MODEL_KEY` (plain JSON)."""
        assert self.learner is not None
        return {
            "kind": "churn",
            "model": model.to_dict(),
            "learner": self.learner.to_dict(),
            "last_refit_day": self.last_refit_day,
            "start_day": self.start_day,
            "warmup_skipped": self.warmup_skipped,
            # Gamma-Gamma spend model of the CLV (models.clv), plain JSON
            "spend": None if self.spend is None else self.spend.to_dict(),
            "published_s": time.time(),
        }
