"""Behavioural clusters: one model for the whole customer base, paced in stream time.

The learner (:class:`SegmentLearner`) runs on exactly one worker (the owner of
the single ``segment-training`` partition). It keeps the latest
:func:`~models.cluster_vector.cluster_vector` of a sample of customers and
refits k-means on them once per period of **stream time** (a day by default):
the model as of day D depends on the customers' samples up to D, never on the
wall clock, on batch sizes or on the order samples arrived in, so a replay
gives the same model timeline as living through it. k is chosen as the
best-separated k among those that are reproducible across resamples
(:mod:`models.k_selection`) at most once a week of stream time; cluster ids
stay stable by matching new centroids to old ones, and every
init, split, merge and relabel is recorded as an event. The learner publishes
JSON snapshots; every worker turns the latest snapshot into a
:class:`SegmentAssigner`, a few lines of arithmetic that assign a customer with
hysteresis, so all workers agree on everybody's cluster.

See ``docs/clustering.md`` for the design and the snapshot format.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from models.cluster_labels import (
    describe_clusters,
    distinguishing,
    level_phrase,
    still_describes,
)
from models.cluster_snapshot import SnapshotError, validate_snapshot
from models.cluster_vector import FEATURES, cluster_vector
from models.eventtime import MS_PER_DAY
from models.k_selection import choose_k, smallest_share, stability
from models.kmeans import fit, lloyd, sq_dists
from models.learner_state import LearnerStateError, decode, encode

__all__ = [
    "FEATURES",
    "FORMAT_VERSION",
    "HYSTERESIS",
    "STATE_VERSION",
    "LearnerStateError",
    "SegmentAssigner",
    "SegmentLearner",
    "SnapshotError",
    "cluster_vector",
    "describe_clusters",
    "match_centroids",
    "silhouette_score",
]

FORMAT_VERSION = 2
"""Version of the snapshot layout (``snapshot()["format"]``)."""
HYSTERESIS = 0.3
"""How much closer another centroid must be before a customer changes cluster.

Measured with ``python -m streams.tools.quality`` (1,500 customers, 120 days): on
overlapping personas 0.1 gave 0.19 cluster changes per customer per 30 days
in the steady state, 0.2 gave 0.11, 0.3 gave 0.08 (goal < 0.1), while the
agreement with the personas moved from 0.98 to 0.95 of batch k-means.
``docs/clustering.md``, "Assigner"."""
STATE_VERSION = 2
"""Version of the :meth:`SegmentLearner.to_bytes` format (1 was a pickle: never read)."""
STATE_KIND = "segmenter.SegmentLearner"

_D = len(FEATURES)
_SILHOUETTE_MAX_POINTS = 2000
_NO_TIME = -(2**62)  # "before any sample": the learner has closed no period yet


def _pairwise(Z: np.ndarray) -> np.ndarray:
    return np.sqrt(sq_dists(Z, Z))


def silhouette_score(D: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette from a precomputed distance matrix, in O(n^2 k) numpy.

    Points in singleton clusters score 0 (as in scikit-learn); fewer than two
    clusters score 0.

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.array([[0.0], [0.1], [5.0], [5.2]])
    >>> D = np.abs(Z - Z.T)
    >>> round(silhouette_score(D, np.array([0, 0, 1, 1])), 3)
    0.97
    """
    uniq, lab = np.unique(labels, return_inverse=True)
    k = len(uniq)
    n = len(lab)
    if k < 2 or n < 3:
        return 0.0
    onehot = np.zeros((n, k))
    onehot[np.arange(n), lab] = 1.0
    sums = D @ onehot
    counts = onehot.sum(0)
    own = sums[np.arange(n), lab]
    own_count = counts[lab] - 1.0
    a = np.divide(own, own_count, out=np.zeros(n), where=own_count > 0)
    mean_other = sums / counts[None, :]
    mean_other[np.arange(n), lab] = np.inf
    b = mean_other.min(1)
    denom = np.maximum(a, b)
    s = np.divide(b - a, denom, out=np.zeros(n), where=denom > 0)
    s[own_count == 0] = 0.0
    return float(s.mean())


# --------------------------------------------------------------------------- id matching


def match_centroids(
    old: Mapping[str, Sequence[float]], new: Sequence[Sequence[float]]
) -> list[str | None]:
    """Match new centroids to old cluster ids, minimising total distance.

    Exact minimum-cost assignment by dynamic programming over subsets (k is
    small); when there are more new than old centroids the extra ones get
    ``None`` (they need fresh ids), when there are fewer some old ids are left
    out (they retire).

    Examples
    --------
    >>> match_centroids({"c0": [0, 0], "c1": [5, 5]}, [[5.1, 4.9], [0.2, 0.0], [9, 0]])
    ['c1', 'c0', None]
    >>> match_centroids({"c0": [0, 0], "c1": [5, 5], "c2": [9, 9]}, [[8.5, 9]])
    ['c2']
    """
    old_ids = list(old)
    if not old_ids or not new:
        return [None] * len(new)
    cost = [[math.dist(n_c, old[o]) for o in old_ids] for n_c in new]
    if len(new) <= len(old_ids):
        pairs = _assign_rows(cost)
        return [old_ids[pairs[i]] for i in range(len(new))]
    transposed = [list(col) for col in zip(*cost, strict=True)]
    pairs = _assign_rows(transposed)  # old index -> new index
    result: list[str | None] = [None] * len(new)
    for o_idx, n_idx in pairs.items():
        result[n_idx] = old_ids[o_idx]
    return result


def _assign_rows(cost: list[list[float]]) -> dict[int, int]:
    """Min-cost matching of every row to a distinct column (rows <= columns)."""
    n, m = len(cost), len(cost[0])
    if m > 16:  # pragma: no cover - k is bounded far below this; greedy fallback
        result: dict[int, int] = {}
        free = set(range(m))
        order = sorted((cost[i][j], i, j) for i in range(n) for j in range(m))
        for _, i, j in order:
            if i not in result and j in free:
                result[i] = j
                free.discard(j)
        return result
    size = 1 << m
    best = [math.inf] * size
    parent = [-1] * size
    best[0] = 0.0
    for mask in range(size):
        if best[mask] == math.inf:
            continue
        row = mask.bit_count()
        if row >= n:
            continue
        for j in range(m):
            bit = 1 << j
            if mask & bit:
                continue
            value = best[mask] + cost[row][j]
            if value < best[mask | bit]:
                best[mask | bit] = value
                parent[mask | bit] = j
    final = min(
        (mask for mask in range(size) if mask.bit_count() == n), key=lambda mk: (best[mk], mk)
    )
    result = {}
    mask = final
    for row in range(n - 1, -1, -1):
        j = parent[mask]
        result[row] = j
        mask &= ~(1 << j)
    return result


# --------------------------------------------------------------------------- learner


def _clean(x: Mapping[str, Any]) -> dict[str, float]:
    """Keep the known finite dimensions of a vector; raise if none is known."""
    out: dict[str, float] = {}
    for f in FEATURES:
        v = x.get(f)
        if v is None or isinstance(v, bool):
            continue
        v = float(v)
        if math.isfinite(v):
            out[f] = v
    if not out and x:
        raise ValueError(
            "no clustering dimension in the input; pass cluster_vector(features), "
            f"not the raw features (expected some of {', '.join(FEATURES)})"
        )
    return out


def _key_hash(key: str) -> int:
    """A uniform 64-bit hash of a sample key (the store keeps the smallest)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _standardisation(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each column over its known (non-NaN) values."""
    known = ~np.isnan(R)
    counts = known.sum(0)
    sums = np.where(known, R, 0.0).sum(0)
    mean = np.divide(sums, counts, out=np.zeros(R.shape[1]), where=counts > 0)
    squares = np.where(known, (R - mean) ** 2, 0.0).sum(0)
    var = np.divide(squares, counts, out=np.zeros(R.shape[1]), where=counts > 0)
    return mean, np.sqrt(var)


def _scale(R: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """z-scores; unknown values and constant columns are 0 (the average customer)."""
    safe = np.where(std > 0, std, 1.0)
    Z = np.where(std > 0, (R - mean) / safe, 0.0)
    return np.nan_to_num(Z, nan=0.0)


_PARAMS = (
    "k_min",
    "k_max",
    "warmup",
    "warmup_days",
    "reservoir_size",
    "refit_days",
    "reevaluate_days",
    "min_stability",
    "min_share",
    "tolerance",
    "stability_pairs",
    "n_init",
    "max_events",
    "seed",
)


class SegmentLearner:
    """k-means over the customer base, refitted once per period of stream time.

    Feed it one :func:`~models.cluster_vector.cluster_vector` per customer and
    sample time with :meth:`learn_one`, and tell it how far the stream is
    complete with :meth:`advance`: at every period boundary (UTC midnight for
    ``refit_days=1``) the samples up to the boundary are folded in and the
    model is refitted, so the model as of a day depends on the data up to it,
    not on when or in which order the samples arrived.

    * **Sample store.** The latest sample (by time) of up to
      ``reservoir_size`` customers: those with the smallest hashes of their
      key, a uniform sample of the customer base that does not depend on
      arrival order. Samples after the last closed boundary wait until it
      passes. :meth:`forget` removes a customer (privacy).
    * **First clustering** once ``warmup`` customers are stored: the store is
      standardised (mean and spread of each dimension over the customers; an
      unknown value counts as average), k is chosen in ``[k_min, k_max]``
      (:func:`models.k_selection.choose_k`: the best silhouette among the ks
      that are reproducible across resamples) and the best of ``n_init``
      k-means++ fits is adopted.
    * **Every boundary** (with new samples): the store is standardised again
      and the centroids refined by Lloyd iterations from where they were (ids
      unchanged). **Every** ``reevaluate_days``: k is chosen again (the
      smaller of two equally good ks wins, ``tolerance``, and the current k is
      kept while it is as good); a new k must win two evaluations in a row,
      then it is fitted and its centroids matched to the old ones, so
      continuing clusters keep their ids, new ones get
      fresh, never reused ids, and splits and merges are recorded as events;
      labels are derived again (a changed label is a ``relabel`` event).
      Between re-evaluations labels are kept, so they do not flicker.
    * Every random choice derives from ``seed`` and the boundary's day.

    Parameters
    ----------
    k_min, k_max
        Bounds on the number of clusters (``2 <= k_min <= k_max <= 16``);
        equal bounds pin k.
    warmup
        Customers needed before the first clustering.
    warmup_days
        Stream time from the first sample before the first clustering: the
        30- and 90-day windows of the vectors need a few weeks of history to
        mean what they say (a model formed on the first day of a history
        chose k on half-empty windows and then had to split and merge).
    reservoir_size
        Customers kept in the sample store.
    refit_days
        Stream-time period between refits (and published snapshots).
    reevaluate_days
        Stream-time period between choices of k (and of labels).
    min_stability, min_share, tolerance
        The rule of :func:`models.k_selection.choose_k`: the stability a k
        needs (over-segmentation guard), the smallest cluster it may have,
        and how much better a larger k's silhouette must be to be preferred
        (which also keeps k from flipping).
    stability_pairs
        Pairs of resamples per candidate k.
    n_init
        k-means++ restarts per fit.
    max_events
        Model events kept in snapshots (most recent).
    seed
        Seed of every random choice.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> def sample():
    ...     big = rng.random() < 0.5
    ...     return {"order_value": rng.gauss(5.0 if big else 3.0, 0.2),
    ...             "purchase_rate": rng.gauss(1.0 if big else 0.2, 0.1)}
    >>> DAY = 86_400_000
    >>> learner = SegmentLearner(warmup=100, seed=1)
    >>> for i in range(150):  # customers' samples during day 0
    ...     learner.learn_one(sample(), key=f"customer{i}", t=i * 1000)
    >>> learner.ready, learner.predict_one(sample())
    (False, None)
    >>> learner.advance(DAY)  # day 0 is complete: the first model, as of midnight
    True
    >>> learner.ready, learner.k, learner.as_of_ms == DAY
    (True, 2, True)
    >>> snap = learner.snapshot()
    >>> snap["version"], snap["model_version"], sorted(snap["centroids"])
    (1, 'km-1', ['c0', 'c1'])
    >>> assigner = SegmentAssigner.from_snapshot(snap)
    >>> x = {"order_value": 5.1, "purchase_rate": 1.1}
    >>> assigner.assign(x)[0] == learner.predict_one(x)
    True
    >>> learner.advance(DAY + 3_600_000)  # within day 1: nothing to do yet
    False
    """

    def __init__(
        self,
        k_min: int = 2,
        k_max: int = 8,
        warmup: int = 500,
        warmup_days: float = 0.0,
        reservoir_size: int = 2000,
        refit_days: float = 1.0,
        reevaluate_days: float = 7.0,
        min_stability: float = 0.8,
        min_share: float = 0.02,
        tolerance: float = 0.01,
        stability_pairs: int = 5,
        n_init: int = 4,
        max_events: int = 50,
        seed: int = 42,
    ) -> None:
        for name in ("k_min", "k_max", "warmup", "reservoir_size", "stability_pairs", "n_init"):
            value = locals()[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not 2 <= k_min <= k_max <= 16:
            raise ValueError(f"need 2 <= k_min <= k_max <= 16 (k_min={k_min}, k_max={k_max})")
        if warmup < k_max * 5 or reservoir_size < warmup:
            raise ValueError("need k_max * 5 <= warmup <= reservoir_size")
        if not 0 < refit_days <= reevaluate_days:
            raise ValueError("need 0 < refit_days <= reevaluate_days")
        self.k_min = k_min
        self.k_max = k_max
        self.warmup = warmup
        self.warmup_days = warmup_days
        self.reservoir_size = reservoir_size
        self.refit_days = refit_days
        self.reevaluate_days = reevaluate_days
        self.min_stability = min_stability
        self.min_share = min_share
        self.tolerance = tolerance
        self.stability_pairs = stability_pairs
        self.n_init = n_init
        self.max_events = max_events
        self.seed = seed

        # Sample store: slot -> key, row (raw vector, NaN = unknown), time, key hash.
        self._keys: list[str] = []
        self._slot_of: dict[str, int] = {}
        self._rows = np.full((reservoir_size, _D), np.nan)
        self._times = np.zeros(reservoir_size, dtype=np.int64)
        self._hashes: list[int] = []
        self._threshold: int | None = None  # largest stored hash once full
        self._pending: list[tuple[int, str, np.ndarray]] = []  # after the last boundary
        self._dirty = False  # store changed since the last refit
        self._anonymous = 0  # samples learned without a key
        # Samples that came after their period had closed (their sender had said
        # it was complete): a replay folds them in before the close, so each one
        # is a way the live model timeline can differ from a replay's.
        self.late_samples = 0
        self.latest_lateness_ms = 0  # how far behind the closed boundary the last one was

        # The model.
        self.ids: list[str] = []
        self.centroids = np.zeros((0, _D))  # raw units
        self.mean = np.zeros(_D)
        self.std = np.zeros(_D)
        self.labels: dict[str, str] = {}
        self.shares: dict[str, float] = {}
        self.next_id = 0
        self.samples = 0
        self.version = 0
        self.events: list[dict[str, Any]] = []
        self.silhouette: float | None = None
        self.stabilities: dict[int, float] = {}
        self.silhouettes: dict[int, float] = {}
        self.as_of_ms = _NO_TIME  # last closed boundary
        self.first_ms: int | None = None  # time of the first sample folded in
        self._k_candidate: int | None = None  # a new k chosen once, awaiting confirmation
        self.k_evaluated_ms = _NO_TIME
        self.changed = False  # the model changed since the last snapshot()

    # ------------------------------------------------------------------ properties

    @property
    def ready(self) -> bool:
        """True once the warm-up is over and clusters exist."""
        return bool(self.ids)

    @property
    def closed_through(self) -> int | None:
        """The last period boundary closed (ms; the snapshot's ``as_of_ms``), if any."""
        return None if self.as_of_ms == _NO_TIME else int(self.as_of_ms)

    @property
    def k(self) -> int:
        """Current number of clusters (0 during warm-up)."""
        return len(self.ids)

    @property
    def customers(self) -> int:
        """Customers in the sample store."""
        return len(self._keys)

    @property
    def centers(self) -> dict[str, dict[str, float]]:
        """Current centers in z-scores of the current standardisation, by cluster id."""
        C = self._z(self.centroids)
        return {
            cid: {f: float(C[i, j]) for j, f in enumerate(FEATURES)}
            for i, cid in enumerate(self.ids)
        }

    @property
    def _period_ms(self) -> int:
        return max(1, round(self.refit_days * MS_PER_DAY))

    def set_k_bounds(self, k_min: int, k_max: int) -> None:
        """Adopt new bounds on k (the segments YAML changed); a k outside them is
        re-chosen at the next boundary."""
        if not 2 <= k_min <= k_max <= 16 or self.warmup < 5 * k_max:
            raise ValueError(f"invalid k bounds {k_min}..{k_max} for warmup {self.warmup}")
        if (k_min, k_max) != (self.k_min, self.k_max):
            self.k_min, self.k_max = k_min, k_max
            if self.ready and not k_min <= self.k <= k_max:
                self.k_evaluated_ms = _NO_TIME
                self._dirty = True

    # ------------------------------------------------------------------ learning

    def learn_one(self, x: Mapping[str, Any], key: str | None = None, t: int | None = None) -> None:
        """Take in one customer's clustering vector as of time ``t`` (epoch ms).

        Parameters
        ----------
        x
            A :func:`~models.cluster_vector.cluster_vector` dict; absent or
            ``None`` dimensions are unknown (treated as average).
        key
            The customer's (pseudonymous) key: the store keeps their latest
            sample, and :meth:`forget` can remove it. Without one, every
            sample counts as a customer of its own.
        t
            The time the vector describes. A sample after the last closed
            boundary waits for :meth:`advance` to pass it; without ``t`` (or
            for an older one) it goes straight into the store.
        """
        v = _clean(x)
        if not v:
            return
        row = np.array([v.get(f, math.nan) for f in FEATURES])
        if key is None:
            self._anonymous += 1
            key = f"#{self._anonymous}"
        if t is None or t <= self.as_of_ms:
            if t is not None:
                self.late_samples += 1
                self.latest_lateness_ms = self.as_of_ms - int(t)
            self._store(key, self.as_of_ms if t is None else int(t), row)
        else:
            self._pending.append((int(t), key, row))

    def learn_many(
        self,
        xs: Iterable[Mapping[str, Any]],
        keys: Iterable[str | None] | None = None,
        times: Iterable[int | None] | None = None,
    ) -> None:
        """:meth:`learn_one` for several vectors, in order."""
        xs = list(xs)
        key_list = list(keys) if keys is not None else [None] * len(xs)
        time_list = list(times) if times is not None else [None] * len(xs)
        for x, key, t in zip(xs, key_list, time_list, strict=True):
            self.learn_one(x, key, t)

    def _store(self, key: str, t: int, row: np.ndarray) -> None:
        self.samples += 1  # counted when folded in, so it does not depend on arrival
        if t != _NO_TIME and (self.first_ms is None or t < self.first_ms):
            self.first_ms = t
        slot = self._slot_of.get(key)
        if slot is not None:
            if t >= self._times[slot]:
                self._rows[slot] = row
                self._times[slot] = t
                self._dirty = True
            return
        h = _key_hash(key)
        n = len(self._keys)
        if n < self.reservoir_size:
            slot = n
            self._keys.append(key)
            self._hashes.append(h)
        else:
            assert self._threshold is not None
            if h >= self._threshold:
                return  # not among the customers the store samples
            slot = self._hashes.index(self._threshold)
            del self._slot_of[self._keys[slot]]
            self._keys[slot] = key
            self._hashes[slot] = h
        self._slot_of[key] = slot
        self._rows[slot] = row
        self._times[slot] = t
        self._dirty = True
        self._threshold = max(self._hashes) if len(self._keys) == self.reservoir_size else None

    def forget(self, key: str) -> bool:
        """Drop a customer's samples (privacy: erase, opt-out); True if any was held.

        The centroids are averages over many customers; the next refit no
        longer includes this one.
        """
        before = len(self._pending)
        self._pending = [p for p in self._pending if p[1] != key]
        found = len(self._pending) != before
        slot = self._slot_of.pop(key, None)
        if slot is None:
            return found
        last = len(self._keys) - 1
        if slot != last:
            moved = self._keys[last]
            self._keys[slot] = moved
            self._hashes[slot] = self._hashes[last]
            self._rows[slot] = self._rows[last]
            self._times[slot] = self._times[last]
            self._slot_of[moved] = slot
        self._keys.pop()
        self._hashes.pop()
        self._rows[last] = np.nan
        self._times[last] = 0
        self._threshold = None
        self._dirty = True
        return True

    def advance(self, watermark_ms: int) -> bool:
        """Close every period boundary up to ``watermark_ms``; True if the model changed.

        The caller promises that every sample with ``t <= watermark_ms`` has
        been given to :meth:`learn_one`. Boundaries are closed one period at a
        time, from the first one after the last closed boundary (or the
        earliest sample's), so a learner that is told late about a long
        stretch ends where one told every day would.
        """
        period = self._period_ms
        target = (int(watermark_ms) // period) * period
        changed = False
        while True:
            if self.as_of_ms == _NO_TIME:
                first = min((p[0] for p in self._pending), default=target)
                boundary = -(-first // period) * period  # the first boundary at or after it
            else:
                boundary = self.as_of_ms + period
            if boundary > target:
                return changed
            changed = self._close(boundary) or changed

    def _close(self, boundary: int) -> bool:
        """Fold the samples up to ``boundary`` and refit; True if the model changed."""
        due = sorted((p for p in self._pending if p[0] <= boundary), key=lambda p: (p[0], p[1]))
        if due:
            self._pending = [p for p in self._pending if p[0] > boundary]
            for t, key, row in due:
                self._store(key, t, row)
        self.as_of_ms = boundary
        n = len(self._keys)
        if n < max(self.warmup, 2 * self.k_max):
            return False  # warming up (or refilling after a restore from a snapshot)
        if not self.ready and (
            self.first_ms is not None and boundary - self.first_ms < self.warmup_days * MS_PER_DAY
        ):
            return False  # too little history yet
        k_due = not self.ready or boundary >= self.k_evaluated_ms + int(
            self.reevaluate_days * MS_PER_DAY
        )
        if not (self._dirty or k_due):
            return False
        self._refit(boundary, k_due)
        return True

    def refit(self) -> None:
        """Refit now on the stored samples, as at a boundary (tests, operators)."""
        self._refit(self.as_of_ms, k_due=True)

    def _refit(self, boundary: int, k_due: bool) -> None:
        rng = np.random.default_rng([self.seed, max(boundary, 0) // MS_PER_DAY])
        R = self._rows[: len(self._keys)]
        self.mean, self.std = _standardisation(R)
        Z = _scale(R, self.mean, self.std)
        events: list[dict[str, Any]] = []
        if not self.ready:
            k, fits = self._choose(Z, rng, None)
            C, labels = fits[k][0], fits[k][1]
            self.ids = [self._fresh_id() for _ in range(k)]
            events.append({"kind": "init", "k": k, "ids": list(self.ids)})
        else:
            C, labels, _ = lloyd(Z, self._z(self.centroids), reseed_empty=False)
            if k_due:
                k, fits = self._choose(Z, rng, self.k, current=(C, labels))
                # A new k must win two evaluations in a row (a week apart) before
                # the model changes structure: one week's sample is not enough to
                # split or merge segments that downstream systems act on.
                confirmed = k == self._k_candidate or not self.k_min <= self.k <= self.k_max
                self._k_candidate = k if k != self.k else None
                if k != self.k and confirmed:
                    events.extend(self._adopt(fits[k][0], fits[k][1], C, labels))
                    C, labels = fits[k][0], fits[k][1]
                    self._k_candidate = None
        self.centroids = self.mean + np.where(self.std > 0, self.std, 0.0) * C
        counts = np.bincount(labels, minlength=self.k)
        self.shares = {cid: float(counts[i] / len(Z)) for i, cid in enumerate(self.ids)}
        if k_due:
            self.k_evaluated_ms = boundary
            self.silhouette = self.silhouettes.get(self.k)
            events.extend(self._relabel())
        self._dirty = False
        self.version += 1
        self.changed = True
        for event in events:
            event.update(version=self.version, as_of_ms=boundary, customers=self.customers)
        self.events.extend(events)
        del self.events[: -self.max_events]

    def _choose(
        self,
        Z: np.ndarray,
        rng: np.random.Generator,
        current_k: int | None,
        current: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[int, dict[int, tuple[np.ndarray, np.ndarray, float]]]:
        """The k to use and the fits of the candidates (the current model's for ``current_k``)."""
        fits = {}
        for k in range(self.k_min, self.k_max + 1):
            if k == current_k and current is not None:
                fits[k] = (current[0], current[1], 0.0)
            else:
                fits[k] = fit(Z, k, rng, self.n_init)
        idx = self._evaluation_sample(len(Z), rng)
        distances = _pairwise(Z[idx])
        self.silhouettes = {k: silhouette_score(distances, f[1][idx]) for k, f in fits.items()}
        self.stabilities = {
            k: stability(Z, k, rng, pairs=self.stability_pairs) for k in sorted(fits)
        }
        if self.k_min == self.k_max:
            return self.k_min, fits
        k = choose_k(
            self.silhouettes,
            self.stabilities,
            {k: smallest_share(f[1], k) for k, f in fits.items()},
            k_min=self.k_min,
            current=current_k,
            min_stability=self.min_stability,
            min_share=self.min_share,
            tolerance=self.tolerance,
        )
        return k, fits

    @staticmethod
    def _evaluation_sample(n: int, rng: np.random.Generator) -> np.ndarray:
        if n <= _SILHOUETTE_MAX_POINTS:
            return np.arange(n)
        return np.sort(rng.choice(n, _SILHOUETTE_MAX_POINTS, replace=False))

    def _z(self, C: np.ndarray) -> np.ndarray:
        return _scale(C, self.mean, self.std)

    def _adopt(
        self, C_new: np.ndarray, L_new: np.ndarray, C_old: np.ndarray, L_old: np.ndarray
    ) -> list[dict[str, Any]]:
        """Install new centers (z-scores), matching ids; return the split and merge events."""
        old_ids = list(self.ids)
        matched = match_centroids(
            {cid: C_old[i].tolist() for i, cid in enumerate(old_ids)}, C_new.tolist()
        )
        overlap = np.zeros((len(C_new), len(old_ids)), dtype=np.int64)
        np.add.at(overlap, (L_new, L_old), 1)
        dist = np.sqrt(sq_dists(C_new, C_old))
        new_ids: list[str] = []
        splits: dict[str, list[str]] = {}
        for j, cid in enumerate(matched):
            if cid is None:
                cid = self._fresh_id()
                row = overlap[j]
                parent = int(row.argmax()) if row.sum() > 0 else int(dist[j].argmin())
                splits.setdefault(old_ids[parent], []).append(cid)
            new_ids.append(cid)
        merges: dict[str, list[str]] = {}
        for i, cid in enumerate(old_ids):
            if cid in new_ids:
                continue
            col = overlap[:, i]
            heir = int(col.argmax()) if col.sum() > 0 else int(dist[:, i].argmin())
            merges.setdefault(new_ids[heir], []).append(cid)
        events: list[dict[str, Any]] = []
        for src, fresh in splits.items():
            into = ([src] if src in new_ids else []) + fresh
            events.append({"kind": "split", "from": src, "into": into})
        for dst, retired in merges.items():
            sources = ([dst] if dst in old_ids else []) + retired
            events.append({"kind": "merge", "from": sources, "into": dst})
        for cid in set(old_ids) - set(new_ids):
            self.labels.pop(cid, None)
        self.ids = new_ids
        return events

    def _relabel(self) -> list[dict[str, Any]]:
        """Derive the labels again; a continuing cluster whose label changed is an event.

        A label is kept while it still describes its cluster (every word holds,
        with some slack) and names its strongest trait, so labels change when
        the cluster does, not when two traits swap places.
        """
        profiles = self.centers
        fresh = {cid: d["label"] for cid, d in describe_clusters({"profiles": profiles}).items()}

        def keeps(cid: str, label: str) -> bool:
            old = self.labels.get(cid)
            if old is None or not still_describes(old, profiles[cid]):
                return False
            if old.endswith(f" ({cid})") and not label.endswith(f" ({cid})"):
                return False  # the twin it was told apart from is gone
            return label.split(" (")[0].split(", ")[0] in old.split(" (")[0].split(", ")

        kept = {
            cid: self.labels[cid] if keeps(cid, label) else label for cid, label in fresh.items()
        }
        if len(set(kept.values())) < len(kept):
            kept = fresh  # a kept label would now name two clusters
        events = [
            {"kind": "relabel", "id": cid, "from_label": self.labels[cid], "label": label}
            for cid, label in kept.items()
            if cid in self.labels and self.labels[cid] != label
        ]
        self.labels = kept
        return events

    def _profiles(self) -> dict[str, Any]:
        return {"profiles": self.centers}

    def _fresh_id(self) -> str:
        cid = f"c{self.next_id}"
        self.next_id += 1
        return cid

    def predict_one(self, x: Mapping[str, Any]) -> str | None:
        """The nearest cluster id (no hysteresis), or None during warm-up."""
        if not self.ready:
            return None
        v = _clean(x)
        row = np.array([[v.get(f, math.nan) for f in FEATURES]])
        return self.ids[int(sq_dists(self._z(row), self._z(self.centroids)).argmin())]

    def reinitialise(self, k: int | None = None) -> None:
        """Refit from scratch on the store (k given, or chosen), keeping ids by matching.

        For operators after a large drift, and for tests; scheduled refits
        only refit from scratch when k changes.
        """
        if not self.ready:
            raise RuntimeError("the learner is still warming up")
        rng = np.random.default_rng([self.seed, self.version, 1])
        R = self._rows[: len(self._keys)]
        self.mean, self.std = _standardisation(R)
        Z = _scale(R, self.mean, self.std)
        C_old, L_old, _ = lloyd(Z, self._z(self.centroids), reseed_empty=False)
        if k is None:
            k, fits = self._choose(Z, rng, None)
            C, labels = fits[k][0], fits[k][1]
        else:
            C, labels, _ = fit(Z, k, rng, self.n_init)
        events = self._adopt(C, labels, C_old, L_old)
        self.centroids = self.mean + np.where(self.std > 0, self.std, 0.0) * C
        counts = np.bincount(labels, minlength=self.k)
        self.shares = {cid: float(counts[i] / len(Z)) for i, cid in enumerate(self.ids)}
        events.extend(self._relabel())
        self.version += 1
        self.changed = True
        for event in events:
            event.update(version=self.version, as_of_ms=self.as_of_ms, customers=self.customers)
        self.events.extend(events)
        del self.events[: -self.max_events]

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> dict[str, Any]:
        """The publishable, JSON-serialisable model (no learner state).

        During warm-up ``k`` is 0 and ``centroids`` is empty (assigners then
        return no cluster). ``version`` counts the model's refits.
        """
        self.changed = False
        C = self._z(self.centroids)
        profiles = {
            cid: {f: float(C[i, j]) for j, f in enumerate(FEATURES)}
            for i, cid in enumerate(self.ids)
        }
        centroids = {
            cid: {f: float(self.centroids[i, j]) for j, f in enumerate(FEATURES)}
            for i, cid in enumerate(self.ids)
        }
        descriptions = describe_clusters({"profiles": profiles})
        return {
            "format": FORMAT_VERSION,
            "version": self.version,
            "model_version": f"km-{self.version}",
            "as_of_ms": self.as_of_ms if self.as_of_ms != _NO_TIME else None,
            "features": list(FEATURES),
            "mean": {f: float(self.mean[j]) for j, f in enumerate(FEATURES)},
            "std": {f: float(self.std[j]) for j, f in enumerate(FEATURES)},
            "centroids": centroids,
            "profiles": profiles,
            "labels": {cid: self.labels.get(cid, descriptions[cid]["label"]) for cid in self.ids},
            "traits": {cid: descriptions[cid]["traits"] for cid in self.ids},
            "shares": dict(self.shares),
            "k": self.k,
            "k_bounds": [self.k_min, self.k_max],
            "samples": self.samples,
            "customers": self.customers,
            "next_id": self.next_id,
            "quality": {
                "silhouette": self.silhouette,
                "stability": {str(k): s for k, s in sorted(self.stabilities.items())},
                "silhouettes": {str(k): s for k, s in sorted(self.silhouettes.items())},
                "k_criterion": "silhouette among reproducible k",
            },
            "events": [dict(e) for e in self.events],
        }

    # ------------------------------------------------------------------ persistence

    def to_bytes(self) -> bytes:
        """The whole learner state, data only (:mod:`models.learner_state`, npz + JSON)."""
        n = len(self._keys)
        meta = {
            "kind": STATE_KIND,
            "version": STATE_VERSION,
            "features": list(FEATURES),
            "params": {name: getattr(self, name) for name in _PARAMS},
            "keys": list(self._keys),
            "pending_keys": [p[1] for p in self._pending],
            "ids": list(self.ids),
            "labels": dict(self.labels),
            "shares": dict(self.shares),
            "next_id": self.next_id,
            "samples": self.samples,
            "model_version": self.version,
            "events": self.events,
            "silhouette": self.silhouette,
            "stabilities": {str(k): s for k, s in self.stabilities.items()},
            "silhouettes": {str(k): s for k, s in self.silhouettes.items()},
            "as_of_ms": self.as_of_ms,
            "first_ms": self.first_ms,
            "k_candidate": self._k_candidate,
            "k_evaluated_ms": self.k_evaluated_ms,
            "dirty": self._dirty,
            "anonymous": self._anonymous,
        }
        arrays = {
            "rows": self._rows[:n],
            "times": self._times[:n],
            "pending_rows": np.array([p[2] for p in self._pending]).reshape(-1, _D),
            "pending_times": np.array([p[0] for p in self._pending], dtype=np.int64),
            "centroids": self.centroids,
            "mean": self.mean,
            "std": self.std,
        }
        return encode(meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> SegmentLearner:
        """Restore a learner written by :meth:`to_bytes`; it continues identically.

        Raises
        ------
        LearnerStateError
            Anything but a valid state of this version (a pickle included: it
            is never unpickled).
        """
        meta, arrays = decode(data, kind=STATE_KIND, version=STATE_VERSION)
        try:
            return cls._restore(meta, arrays)
        except LearnerStateError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise LearnerStateError(f"invalid learner state: {exc}") from exc

    @classmethod
    def _restore(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> SegmentLearner:
        def check(condition: bool, message: str) -> None:
            if not condition:
                raise LearnerStateError(f"invalid learner state: {message}")

        check(meta.get("features") == list(FEATURES), "written for other features")
        params = meta["params"]
        check(isinstance(params, dict) and set(params) == set(_PARAMS), "unexpected parameters")
        for name, value in params.items():
            check(
                not isinstance(value, bool)
                and isinstance(value, int | float)
                and math.isfinite(value),
                f"parameter {name} is not a number",
            )
        learner = cls(**params)
        keys, ids = meta["keys"], meta["ids"]
        rows, times = arrays["rows"], arrays["times"]
        check(isinstance(keys, list) and all(isinstance(k, str) for k in keys), "keys")
        check(len(set(keys)) == len(keys) <= learner.reservoir_size, "keys repeat or overflow")
        check(rows.shape == (len(keys), _D) and times.shape == (len(keys),), "store shape")
        check(not np.isinf(rows).any(), "store values are not finite")
        pending_keys = meta["pending_keys"]
        p_rows, p_times = arrays["pending_rows"], arrays["pending_times"]
        check(
            isinstance(pending_keys, list) and all(isinstance(k, str) for k in pending_keys),
            "pending keys",
        )
        check(
            p_rows.shape == (len(pending_keys), _D) and p_times.shape == (len(pending_keys),),
            "pending shape",
        )
        check(not np.isinf(p_rows).any(), "pending values are not finite")
        check(
            isinstance(ids, list)
            and all(isinstance(c, str) for c in ids)
            and len(set(ids)) == len(ids),
            "cluster ids",
        )
        centroids, mean, std = arrays["centroids"], arrays["mean"], arrays["std"]
        check(centroids.shape == (len(ids), _D) and bool(np.isfinite(centroids).all()), "centroids")
        check(mean.shape == (_D,) and std.shape == (_D,), "standardisation shape")
        check(
            bool(np.isfinite(mean).all() and np.isfinite(std).all() and (std >= 0).all()), "spread"
        )
        for name in (
            "next_id",
            "samples",
            "model_version",
            "as_of_ms",
            "k_evaluated_ms",
            "anonymous",
        ):
            check(isinstance(meta[name], int) and not isinstance(meta[name], bool), name)
        check(
            isinstance(meta["events"], list) and all(isinstance(e, dict) for e in meta["events"]),
            "events",
        )
        for name in ("labels", "shares", "stabilities", "silhouettes"):
            check(isinstance(meta[name], dict), name)
        for i, key in enumerate(keys):
            learner._keys.append(key)
            learner._hashes.append(_key_hash(key))
            learner._slot_of[key] = i
        learner._rows[: len(keys)] = rows
        learner._times[: len(keys)] = times
        if len(keys) == learner.reservoir_size:
            learner._threshold = max(learner._hashes)
        learner._pending = [
            (int(t), key, np.array(row, dtype=float))
            for t, key, row in zip(p_times.tolist(), pending_keys, p_rows, strict=True)
        ]
        learner._dirty = bool(meta["dirty"])
        learner._anonymous = meta["anonymous"]
        learner.ids = list(ids)
        learner.centroids = np.array(centroids, dtype=float)
        learner.mean, learner.std = np.array(mean, dtype=float), np.array(std, dtype=float)
        learner.labels = {str(k): str(v) for k, v in meta["labels"].items()}
        learner.shares = {str(k): float(v) for k, v in meta["shares"].items()}
        learner.next_id = meta["next_id"]
        learner.samples = meta["samples"]
        learner.version = meta["model_version"]
        learner.events = [dict(e) for e in meta["events"]]
        silhouette = meta.get("silhouette")
        learner.silhouette = float(silhouette) if isinstance(silhouette, int | float) else None
        learner.stabilities = {int(k): float(v) for k, v in meta["stabilities"].items()}
        learner.silhouettes = {int(k): float(v) for k, v in meta["silhouettes"].items()}
        learner.as_of_ms = meta["as_of_ms"]
        learner.k_evaluated_ms = meta["k_evaluated_ms"]
        first = meta.get("first_ms")
        check(first is None or (isinstance(first, int) and not isinstance(first, bool)), "first_ms")
        learner.first_ms = first
        candidate = meta.get("k_candidate")
        check(
            candidate is None or (isinstance(candidate, int) and not isinstance(candidate, bool)),
            "k_candidate",
        )
        learner._k_candidate = candidate
        return learner

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any], **params: Any) -> SegmentLearner:
        """Resume from a published snapshot (e.g. when the learner state was lost or refused).

        The model (standardisation, centroids, ids, labels, versions, events,
        as-of time) is restored; the sample store starts empty, and the model
        is kept unchanged until ``warmup`` customers have been seen again.
        """
        snap = validate_snapshot(dict(snapshot))
        learner = cls(**params)
        mean = snap.get("mean") or {}
        std = snap.get("std") or {}
        learner.mean = np.array([float(mean.get(f, 0.0)) for f in FEATURES])
        learner.std = np.array([float(std.get(f, 0.0)) for f in FEATURES])
        profiles = snap.get("profiles") or {}
        centroids = snap.get("centroids") or {}
        ids = list(profiles)
        if ids:
            learner.ids = ids
            learner.centroids = np.array(
                [
                    [
                        float(centroids[c][f])
                        if c in centroids and f in centroids[c]
                        else learner.mean[j] + learner.std[j] * float(profiles[c].get(f, 0.0))
                        for j, f in enumerate(FEATURES)
                    ]
                    for c in ids
                ]
            )
            learner.next_id = max(
                int(snap.get("next_id", 0)),
                *(int(c[1:]) + 1 for c in ids if c[1:].isdigit()),
                0,
            )
        learner.labels = {c: str(v) for c, v in (snap.get("labels") or {}).items() if c in ids}
        learner.shares = {c: float(v) for c, v in (snap.get("shares") or {}).items() if c in ids}
        learner.samples = int(snap.get("samples", 0))
        learner.version = int(snap.get("version", 0))
        learner.events = [dict(e) for e in snap.get("events") or []]
        quality = snap.get("quality") or {}
        silhouette = quality.get("silhouette") if isinstance(quality, dict) else None
        learner.silhouette = float(silhouette) if isinstance(silhouette, int | float) else None
        as_of = snap.get("as_of_ms")
        if isinstance(as_of, int) and not isinstance(as_of, bool):
            learner.as_of_ms = as_of
            learner.k_evaluated_ms = as_of
        return learner


# --------------------------------------------------------------------------- assigner


class SegmentAssigner:
    """Fast, pure-Python cluster assignment from a snapshot, with hysteresis.

    Parameters
    ----------
    snapshot
        A :meth:`SegmentLearner.snapshot` dict (possibly after a JSON round trip).
    hysteresis
        A customer leaves their current cluster only when another centroid is
        closer by this relative margin (default :data:`HYSTERESIS`: 30 % closer).

    Examples
    --------
    >>> snap = {"version": 3, "model_version": "km-3", "features": ["a", "b"],
    ...         "mean": {"a": 0.0, "b": 10.0}, "std": {"a": 1.0, "b": 2.0},
    ...         "profiles": {"c0": {"a": -1.0, "b": 0.0}, "c1": {"a": 1.0, "b": 0.0}},
    ...         "labels": {"c0": "low a", "c1": "high a"}, "events": []}
    >>> assigner = SegmentAssigner.from_snapshot(snap)
    >>> assigner.assign({"a": 0.9, "b": 10.0})[0]
    'c1'
    >>> cid, margin, reasons = assigner.assign({"a": 0.05, "b": 10.0}, current="c0")
    >>> cid, round(margin, 3)  # c1 is closer, but by < 30 %: stay in c0
    ('c0', -0.105)
    >>> assigner.assign({"a": 0.3, "b": 10.0}, current="c0")[0]  # 46 % closer: a real move
    'c1'
    >>> assigner.assign({"a": 0.3, "b": 10.0}, "c0", explain=False)[::2]  # no words
    ('c1', [])
    >>> SegmentAssigner.from_snapshot({"profiles": {}}).assign({"a": 1.0})
    (None, 0.0, [])
    """

    def __init__(self, snapshot: Mapping[str, Any], hysteresis: float = HYSTERESIS) -> None:
        # SnapshotError, with the reason, rather than an assigner half-built
        snapshot = validate_snapshot(dict(snapshot) if isinstance(snapshot, Mapping) else snapshot)
        features = list(snapshot.get("features") or FEATURES)
        mean = snapshot.get("mean") or {}
        std = snapshot.get("std") or {}
        profiles: Mapping[str, Mapping[str, float]] = snapshot.get("profiles") or {}
        self.hysteresis = hysteresis
        self.version: int = int(snapshot.get("version", 0))
        self.model_version: str = str(snapshot.get("model_version", f"km-{self.version}"))
        self.features = features
        self.labels: dict[str, str] = dict(snapshot.get("labels") or {})
        self.ids: list[str] = list(profiles)
        self._index = {cid: i for i, cid in enumerate(self.ids)}
        self._scale = [
            (
                f,
                float(mean.get(f, 0.0)),
                1.0 / float(std.get(f, 0.0)) if float(std.get(f, 0.0) or 0.0) > 0 else 0.0,
            )
            for f in features
        ]
        self._centers = [tuple(float(profiles[c].get(f, 0.0)) for f in features) for c in self.ids]
        self._keep = (1.0 - hysteresis) ** 2
        # Distinguishing traits per cluster: (feature index, sign).
        self._traits = [
            [(features.index(f), 1.0 if z > 0 else -1.0) for f, z in distinguishing(profiles[c])]
            for c in self.ids
        ]
        self._phrases = [
            tuple(level_phrase(f, z) for z in (-2.0, -1.0, 0.0, 1.0, 2.0)) for f in features
        ]
        self._successor = _successors(snapshot.get("events") or [])

    @classmethod
    def from_snapshot(
        cls, snapshot: Mapping[str, Any], hysteresis: float = HYSTERESIS
    ) -> SegmentAssigner:
        """Build an assigner from a snapshot dict."""
        return cls(snapshot, hysteresis=hysteresis)

    @property
    def ready(self) -> bool:
        """False while the model is warming up (no clusters yet)."""
        return bool(self._centers)

    def resolve(self, cid: str | None) -> str | None:
        """Map a possibly retired cluster id to its current successor (or None)."""
        seen = 0
        while cid is not None and cid not in self._index and seen < 64:
            cid = self._successor.get(cid)
            seen += 1
        return cid if cid in self._index else None

    def label(self, cid: str | None) -> str:
        """The readable label of a cluster id ("" if unknown)."""
        return self.labels.get(cid, "") if cid is not None else ""

    def assign(
        self, x: Mapping[str, Any], current: str | None = None, explain: bool = True
    ) -> tuple[str | None, float, list[str]]:
        """Assign a clustering vector to a cluster.

        Parameters
        ----------
        x
            A :func:`~models.cluster_vector.cluster_vector` dict.
        current
            The customer's current cluster id, for hysteresis; a retired id is
            mapped to its successor through the snapshot's merge events.
        explain
            ``False`` leaves ``reasons`` empty (the worker words a placement
            only when it changes).

        Returns
        -------
        tuple
            ``(cluster_id, margin, reasons)``. ``cluster_id`` is None while the
            model warms up. ``margin`` is ``1 - d_assigned / d_nearest_other``:
            positive when the assigned centroid is the nearest, slightly
            negative when hysteresis keeps the current one. ``reasons`` are 2-3
            phrases for the dimensions that make the customer belong there.
        """
        centers = self._centers
        if not centers:
            return None, 0.0, []
        get = x.get
        z = [0.0 if (v := get(f)) is None else (v - m) * inv for f, m, inv in self._scale]
        d2 = []
        for c in centers:
            d = 0.0
            for a, b in zip(z, c, strict=False):
                t = a - b
                d += t * t
            d2.append(d)
        best = min(range(len(d2)), key=d2.__getitem__)
        chosen = best
        if current is not None:
            cur = self._index.get(current)
            if cur is None:
                resolved = self.resolve(current)
                cur = self._index[resolved] if resolved is not None else None
            if cur is not None and cur != best and d2[best] >= self._keep * d2[cur]:
                chosen = cur
        alt = min((d for i, d in enumerate(d2) if i != chosen), default=0.0)
        margin = 1.0 - math.sqrt(d2[chosen] / alt) if alt > 0 else 1.0
        if not explain:
            return self.ids[chosen], margin, []
        return self.ids[chosen], margin, self._reasons(z, chosen, d2, alt)

    def leaving_intervals(
        self, x: Mapping[str, Any], current: str, feature: str
    ) -> list[tuple[float, float]] | None:
        """Where :meth:`assign` leaves ``current`` if only ``feature`` of ``x`` moves.

        The open intervals ``(lo, hi)`` of the raw value of ``feature`` (every
        other dimension as in ``x``) in which another centroid is closer than
        ``current`` by the hysteresis, so :meth:`assign` moves the customer:
        with one moving standardised coordinate ``z`` every squared distance
        is ``rest_k + (z - c_k)^2``, so "``d2_k < keep * d2_current``" is a
        quadratic inequality in ``z`` (leading coefficient ``1 - keep > 0``),
        true between its two roots. ``[]``: never; ``None``: not analysable
        (unknown or retired ``current``, a feature outside the model, no
        hysteresis). Bounds are exact up to floating-point rounding.

        >>> snap = {"version": 1, "features": ["a", "b"], "mean": {"a": 0.0, "b": 0.0},
        ...         "std": {"a": 1.0, "b": 1.0},
        ...         "profiles": {"c0": {"a": 0.0, "b": 0.0}, "c1": {"a": 4.0, "b": 0.0}}}
        >>> assigner = SegmentAssigner.from_snapshot(snap)
        >>> [(round(lo, 3), round(hi, 3)) for lo, hi in
        ...  assigner.leaving_intervals({"a": 0.0, "b": 0.0}, "c0", "a")]
        [(2.353, 13.333)]
        >>> [assigner.assign({"a": a, "b": 0.0}, "c0")[0] for a in (2.3, 2.4, 13.3, 13.4)]
        ['c0', 'c1', 'c1', 'c0']
        """
        cur = self._index.get(current)
        if cur is None or feature not in self.features:
            return None
        j = self.features.index(feature)
        _name, mean, inv = self._scale[j]
        a_coef = 1.0 - self._keep
        if inv <= 0 or a_coef <= 0:
            return None
        get = x.get
        z = [0.0 if (v := get(f)) is None else (v - m) * s for f, m, s in self._scale]
        centers = self._centers

        def rest(k: int) -> float:
            return sum((z[i] - centers[k][i]) ** 2 for i in range(len(z)) if i != j)

        keep = self._keep
        c_cur = centers[cur][j]
        far_cur = rest(cur) + c_cur * c_cur
        out = []
        for k, center in enumerate(centers):
            if k == cur:
                continue
            c_k = center[j]
            b_coef = -2.0 * (c_k - keep * c_cur)
            c_coef = rest(k) + c_k * c_k - keep * far_cur
            disc = b_coef * b_coef - 4.0 * a_coef * c_coef
            if disc <= 0:
                continue
            root = math.sqrt(disc)
            lo = (-b_coef - root) / (2.0 * a_coef)
            hi = (-b_coef + root) / (2.0 * a_coef)
            out.append((lo / inv + mean, hi / inv + mean))
        return out

    def _reasons(self, z: list[float], chosen: int, d2: list[float], alt: float) -> list[str]:
        picked: list[tuple[float, int]] = []
        for i, sign in self._traits[chosen]:
            score = z[i] * sign
            if score >= 0.5:
                picked.append((score, i))
        picked.sort(reverse=True)
        indices = [i for _, i in picked[:3]]
        if len(indices) < 2 and len(d2) > 1:
            # Fall back to what makes the customer closer to this centroid than to the runner-up.
            other = min((i for i in range(len(d2)) if i != chosen), key=d2.__getitem__)
            c, o = self._centers[chosen], self._centers[other]
            gains = sorted(
                (((z[i] - o[i]) ** 2 - (z[i] - c[i]) ** 2, i) for i in range(len(z))),
                reverse=True,
            )
            for gain, i in gains:
                if len(indices) >= 2 or gain <= 0:
                    break
                if i not in indices:
                    indices.append(i)
        out = []
        for i in indices:
            v = z[i]
            bucket = 4 if v >= 1.5 else 3 if v >= 0.5 else 0 if v <= -1.5 else 1 if v <= -0.5 else 2
            out.append(self._phrases[i][bucket])
        return out

    def assign_features(
        self, features: Mapping[str, Any], current: str | None = None
    ) -> tuple[str | None, float, list[str]]:
        """:meth:`assign` on ``cluster_vector(features)``."""
        return self.assign(cluster_vector(features), current)


def _successors(events: Iterable[Mapping[str, Any]]) -> dict[str, str | None]:
    """Retired id -> successor id from merge (and split) events, oldest first."""
    successor: dict[str, str | None] = {}
    for event in events:
        if event.get("kind") == "merge":
            into = event.get("into")
            for src in event.get("from") or []:
                if src != into:
                    successor[src] = into
        elif event.get("kind") == "split":
            src = event.get("from")
            into = event.get("into") or []
            if src is not None and src not in into:
                successor[src] = None  # split without a continuing part: nearest wins
    return successor
