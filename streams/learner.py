"""The single learner that owns the cluster model and the churn fit.

Workers send batches of feature vectors to the one-partition
``segment-training`` topic; whichever worker owns that partition runs this
learner and publishes versioned snapshots to the compacted ``segment-models``
topic. A learner that moves to another worker resumes from the last snapshot,
which carries the learner's full state.
"""

from __future__ import annotations

import base64
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from models.btyd import fit_bgnbd
from models.clustering import SegmentLearner
from models.gamma_gamma import fit_from_samples
from streams.runtime import Runtime

__all__ = ["LearnerHost"]

log = logging.getLogger(__name__)


@dataclass
class LearnerHost:
    """Owns a :class:`SegmentLearner` and a reservoir for the BG/NBD fit."""

    rt: Runtime
    publish_every: int = 2000
    reservoir_size: int = 5000
    seed: int = 42
    learner: SegmentLearner | None = None
    btyd: list[list[float]] = field(default_factory=list)
    # btyd_keys[i]: the learner key of btyd[i]'s customer (an erasure removes it)
    btyd_keys: list[str | None] = field(default_factory=list)
    btyd_seen: int = 0
    pending: int = 0
    churn_params: Any = None
    spend_params: dict[str, Any] | None = None  # Gamma-Gamma, for the CLV (models.clv)
    _rng: random.Random = field(default_factory=lambda: random.Random(42))

    def ensure_learner(self) -> SegmentLearner:
        """Restore the learner from the latest snapshot, or start a fresh one."""
        if self.learner is None:
            message = self.rt.model_message or {}
            self.learner = self._restore(message) or SegmentLearner(
                warmup=self.rt.settings.cluster_warmup, seed=self.seed
            )
            if message.get("snapshot"):
                self.btyd = list(message.get("btyd_reservoir", []))
                keys = message.get("btyd_keys")
                if isinstance(keys, list) and len(keys) == len(self.btyd):
                    self.btyd_keys = list(keys)
                else:  # (snapshots published before samples were keyed)
                    self.btyd_keys = [None] * len(self.btyd)
                self.btyd_seen = int(message.get("btyd_seen", len(self.btyd)))
                self.churn_params = message.get("churn_params")
                self.spend_params = message.get("spend_params")
        return self.learner

    def _restore(self, message: dict[str, Any]) -> SegmentLearner | None:
        """The published learner state; else a learner resumed from the snapshot alone."""
        if message.get("state"):
            try:
                learner = SegmentLearner.from_bytes(base64.b64decode(message["state"]))
                log.info("learner restored from model version %s", learner.version)
                return learner
            except Exception:
                # An incompatible state (another release) must not stop the worker.
                log.exception("cannot restore the learner state; resuming from the snapshot")
        if message.get("snapshot"):
            try:
                return SegmentLearner.from_snapshot(
                    message["snapshot"], warmup=self.rt.settings.cluster_warmup, seed=self.seed
                )
            except Exception:
                log.exception("cannot resume from the snapshot; starting a fresh learner")
        return None

    def learn(self, items: list[dict[str, Any]], learning: bool = True) -> int:
        """Learn from one batch sent by a worker; return how many samples erasures removed.

        With ``learning=False`` (a frozen model) only the erasures are applied:
        privacy requests are honoured whatever the model's state. An erasure
        removes the customer's cluster sample and their BG/NBD samples.
        """
        learner = self.ensure_learner()
        forgotten = 0
        for item in items:
            if "erase" in item:
                forgotten += learner.forget(item["erase"]) + self._forget_btyd(item["erase"])
                continue
            if not learning:
                continue
            learner.learn_one(item["x"], key=item.get("k"))
            self.pending += 1
            if item.get("btyd") is not None:
                self._reservoir_add(item["btyd"], item.get("k"))
        return forgotten

    def _reservoir_add(self, sample: list[float], key: str | None = None) -> None:
        # Algorithm R: a uniform sample of the whole customer base's history.
        self.btyd_seen += 1
        if len(self.btyd) < self.reservoir_size:
            self.btyd.append(sample)
            self.btyd_keys.append(key)
        else:
            j = self._rng.randrange(self.btyd_seen)
            if j < self.reservoir_size:
                self.btyd[j] = sample
                self.btyd_keys[j] = key

    def _forget_btyd(self, key: str) -> int:
        """Drop every BG/NBD sample of the customer with learner key ``key``."""
        keep = [i for i, k in enumerate(self.btyd_keys) if k != key]
        removed = len(self.btyd) - len(keep)
        if removed:
            self.btyd = [self.btyd[i] for i in keep]
            self.btyd_keys = [self.btyd_keys[i] for i in keep]
        return removed

    def should_publish(self) -> bool:
        return self.pending >= self.publish_every

    def snapshot_message(self) -> dict[str, Any]:
        """The message published on ``segment-models``: snapshot plus full state."""
        learner = self.ensure_learner()
        if len(self.btyd) >= 200:
            try:
                import numpy as np

                data = np.asarray([sample[:3] for sample in self.btyd], dtype=float)
                version = f"bgnbd-{self.btyd_seen}"
                fitted = fit_bgnbd(data[:, 0], data[:, 1], data[:, 2], version=version)
                self.churn_params = fitted.to_dict()
            except Exception:
                log.exception("BG/NBD fit failed; keeping the previous parameters")
            try:
                spend = fit_from_samples(
                    self.btyd, self.btyd_keys, version=f"gamma-gamma-{self.btyd_seen}"
                )
                self.spend_params = spend.to_dict() if spend else self.spend_params
            except Exception:
                log.exception("Gamma-Gamma fit failed; keeping the previous parameters")
        snapshot = learner.snapshot()
        snapshot["published_s"] = time.time()
        self.pending = 0
        return {
            "snapshot": snapshot,
            "state": base64.b64encode(learner.to_bytes()).decode(),
            "churn_params": self.churn_params,
            "spend_params": self.spend_params,
            "btyd_reservoir": self.btyd,
            "btyd_keys": self.btyd_keys,
            "btyd_seen": self.btyd_seen,
        }
