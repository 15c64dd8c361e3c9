"""Behavioural clusters: one online model for the whole customer base.

The learner (:class:`SegmentLearner`) runs on exactly one worker (the owner of
the single ``segment-training`` partition). It standardises
:func:`~models.cluster_vector.cluster_vector` vectors with river's
``StandardScaler``, warm-starts river's ``KMeans`` with k-means++ on a reservoir
of scaled samples (river would start from random noise), keeps learning
incrementally, re-evaluates the number of clusters on the reservoir every
``reevaluate_every`` samples, and keeps cluster ids stable by matching new
centroids to old ones. It publishes JSON snapshots; every worker turns the
latest snapshot into a :class:`SegmentAssigner`, a few lines of arithmetic that
assign a customer with hysteresis, so all workers agree on everybody's cluster.

See ``docs/clustering.md`` for the design and the snapshot format.
"""

from __future__ import annotations

import collections
import itertools
import math
import pickle
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from river import cluster, preprocessing

from models.cluster_labels import describe_clusters, distinguishing, level_phrase
from models.cluster_vector import FEATURES, cluster_vector

__all__ = [
    "FEATURES",
    "FORMAT_VERSION",
    "SegmentAssigner",
    "SegmentLearner",
    "cluster_vector",
    "describe_clusters",
    "match_centroids",
    "silhouette_score",
]

FORMAT_VERSION = 1
"""Version of the :meth:`SegmentLearner.to_bytes` format and of the snapshot layout."""

_D = len(FEATURES)
_SILHOUETTE_MAX_POINTS = 2000
_RESERVOIR_HORIZON = 10  # reservoir forgets like a window of ~10 x reservoir_size samples


# --------------------------------------------------------------------------- numpy helpers


def _sq_dists(Z: np.ndarray, C: np.ndarray, zz: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances between the rows of Z (n x d) and C (k x d)."""
    if zz is None:
        zz = np.einsum("ij,ij->i", Z, Z)
    d2 = zz[:, None] - 2.0 * (Z @ C.T) + np.einsum("ij,ij->i", C, C)[None, :]
    return np.maximum(d2, 0.0, out=d2)


def _lloyd(
    Z: np.ndarray, C: np.ndarray, max_iter: int = 50, reseed_empty: bool = True
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd iterations from centers C; returns (centers, labels, inertia)."""
    C = C.copy()
    k = len(C)
    zz = np.einsum("ij,ij->i", Z, Z)
    eye = np.eye(k)
    labels = np.full(len(Z), -1)
    for _ in range(max_iter):
        d2 = _sq_dists(Z, C, zz)
        new_labels = d2.argmin(1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        counts = np.bincount(labels, minlength=k)
        sums = eye[labels].T @ Z
        filled = counts > 0
        C[filled] = sums[filled] / counts[filled, None]
        if reseed_empty and not filled.all():
            # Re-seed empty clusters at the points worst served by their centers.
            worst = np.argsort(-d2[np.arange(len(Z)), labels])
            for j, idx in zip(np.flatnonzero(~filled), worst, strict=False):
                C[j] = Z[idx]
    d2 = _sq_dists(Z, C, zz)
    labels = d2.argmin(1)
    inertia = float(d2[np.arange(len(Z)), labels].sum())
    return C, labels, inertia


def _kmeans_pp(Z: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (D^2 sampling)."""
    n = len(Z)
    centers = [Z[rng.integers(n)]]
    closest = _sq_dists(Z, np.asarray(centers))[:, 0]
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:
            idx = int(rng.integers(n))
        else:
            idx = int(np.searchsorted(np.cumsum(closest), rng.random() * total))
            idx = min(idx, n - 1)
        centers.append(Z[idx])
        closest = np.minimum(closest, _sq_dists(Z, Z[idx : idx + 1])[:, 0])
    return np.asarray(centers)


def _fit(
    Z: np.ndarray, k: int, rng: np.random.Generator, n_init: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Best of ``n_init`` k-means++ + Lloyd runs: (centers, labels, inertia)."""
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(n_init):
        result = _lloyd(Z, _kmeans_pp(Z, k, rng))
        if best is None or result[2] < best[2]:
            best = result
    assert best is not None
    return best


def _pairwise(Z: np.ndarray) -> np.ndarray:
    return np.sqrt(_sq_dists(Z, Z))


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


class SegmentLearner:
    """Online k-means over the customer base with warm start, k choice and stable ids.

    Feed it :func:`~models.cluster_vector.cluster_vector` vectors. Until
    ``warmup`` distinct samples have been seen there are no clusters. Then the
    samples in the reservoir are standardised with the running river
    ``StandardScaler``, k is chosen in ``[k_min, k_max]`` by an elbow rule on
    the within-cluster variance (see :meth:`bends`), and k-means++ (best of
    ``n_init``) centers are written into a river ``KMeans`` which then learns
    incrementally. Every
    ``reevaluate_every`` samples the centers are refined by Lloyd iterations on
    the reservoir (ids unchanged) and k is re-evaluated with a hysteresis band
    of ``min_gain``; when k changes, the new centroids are matched to the old
    ones so that continuing clusters keep their ids, new clusters get fresh,
    never reused ids, and splits/merges are reported as ``events``. The
    silhouette of the chosen partition is reported as the quality figure.

    Parameters
    ----------
    k_min, k_max
        Bounds on the number of clusters (``2 <= k_min <= k_max``).
    warmup
        Distinct samples needed before the first clustering.
    reservoir_size
        Samples kept (raw vectors) for initialisation and re-evaluation. After
        it is full, a new sample replaces a random one with probability
        ``reservoir_size / min(seen, 10 * reservoir_size)``, so the reservoir
        slowly follows drift. A sample with a known ``key`` replaces that
        key's previous sample, so the reservoir reflects customers, not events.
    reevaluate_every
        Samples between re-evaluations of centers and k.
    halflife
        river ``KMeans`` step towards each new sample (small = stable centers).
    elbow
        Over-segmentation guard: the minimum bend of the inertia curve
        (:meth:`bends`) for more than ``k_min`` clusters; noise bends by about
        0.01, real structure by 0.1 and more.
    min_gain
        A re-evaluation changes k only if the new k's bend beats the current
        k's by this much (avoids churn).
    n_init
        k-means++ restarts per fit.
    max_events
        Split/merge/init events kept in snapshots (most recent).
    seed
        Seed for every random choice (reservoir, k-means++, river).

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> def sample():
    ...     big = rng.random() < 0.5
    ...     return {"order_value": rng.gauss(5.0 if big else 3.0, 0.2),
    ...             "purchase_rate": rng.gauss(1.0 if big else 0.2, 0.1)}
    >>> learner = SegmentLearner(warmup=100, reevaluate_every=500, seed=1)
    >>> learner.learn_many(sample() for _ in range(99))
    >>> learner.ready, learner.predict_one(sample())
    (False, None)
    >>> learner.learn_one(sample())
    >>> learner.ready, learner.k
    (True, 2)
    >>> learner.learn_many(sample() for _ in range(1000))
    >>> snap = learner.snapshot()
    >>> snap["version"], snap["model_version"], snap["k"], sorted(snap["centroids"])
    (1, 'km-1', 2, ['c0', 'c1'])
    >>> assigner = SegmentAssigner.from_snapshot(snap)
    >>> x = {"order_value": 5.1, "purchase_rate": 1.1}
    >>> assigner.assign(x)[0] == learner.predict_one(x)
    True
    """

    def __init__(
        self,
        k_min: int = 2,
        k_max: int = 8,
        warmup: int = 500,
        reservoir_size: int = 2000,
        reevaluate_every: int = 5000,
        halflife: float = 0.01,
        elbow: float = 0.05,
        min_gain: float = 0.02,
        n_init: int = 4,
        max_events: int = 50,
        seed: int = 42,
    ) -> None:
        if not 2 <= k_min <= k_max:
            raise ValueError("need 2 <= k_min <= k_max")
        if warmup < k_max * 5 or reservoir_size < warmup:
            raise ValueError("need k_max * 5 <= warmup <= reservoir_size")
        self.k_min = k_min
        self.k_max = k_max
        self.warmup = warmup
        self.reservoir_size = reservoir_size
        self.reevaluate_every = reevaluate_every
        self.halflife = halflife
        self.elbow = elbow
        self.min_gain = min_gain
        self.n_init = n_init
        self.max_events = max_events
        self.seed = seed

        self.scaler = preprocessing.StandardScaler()
        self.kmeans: cluster.KMeans | None = None
        self.ids: list[str] = []  # ids[i] is the id of river center i
        self.next_id = 0
        self.samples = 0
        self.version = 0
        self.events: list[dict[str, Any]] = []
        self.silhouette: float | None = None
        self.inertia: dict[int, float] = {}
        self._since_eval = 0
        self._rng = np.random.default_rng(seed)
        self._pyrng = random.Random(seed)
        self._res = np.full((reservoir_size, _D), np.nan)
        self._res_n = 0
        self._res_seen = 0
        self._res_keys: list[str | None] = [None] * reservoir_size
        self._slot_of: dict[str, int] = {}

    # ------------------------------------------------------------------ properties

    @property
    def ready(self) -> bool:
        """True once the warm-up is over and clusters exist."""
        return self.kmeans is not None

    @property
    def k(self) -> int:
        """Current number of clusters (0 during warm-up)."""
        return len(self.ids)

    @property
    def centers(self) -> dict[str, dict[str, float]]:
        """Current centers in z-score space, by cluster id."""
        if self.kmeans is None:
            return {}
        return {
            cid: {f: float(self.kmeans.centers[i][f]) for f in FEATURES}
            for i, cid in enumerate(self.ids)
        }

    # ------------------------------------------------------------------ learning

    def learn_one(self, x: Mapping[str, Any], key: str | None = None) -> None:
        """Learn from one clustering vector.

        Parameters
        ----------
        x
            A :func:`~models.cluster_vector.cluster_vector` dict; absent or
            ``None`` dimensions are unknown (treated as average).
        key
            Optional customer id: the reservoir then keeps at most one (the
            latest) sample per customer, and :meth:`forget` can remove it.
        """
        v = _clean(x)
        if not v:
            return
        self.samples += 1
        self.scaler.learn_one(v)
        self._offer(v, key)
        if self.kmeans is None:
            if self._res_n >= self.warmup:
                self._initialise()
            return
        self.kmeans.learn_one(self.scaler.transform_one(v))
        self._since_eval += 1
        if self._since_eval >= self.reevaluate_every:
            self.reevaluate()

    def learn_many(
        self, xs: Iterable[Mapping[str, Any]], keys: Iterable[str | None] | None = None
    ) -> None:
        """Learn from several vectors in order (same result as repeated :meth:`learn_one`)."""
        if keys is None:
            for x in xs:
                self.learn_one(x)
        else:
            for x, key in zip(xs, keys, strict=True):
                self.learn_one(x, key)

    def forget(self, key: str) -> bool:
        """Drop a customer's sample from the reservoir (privacy erase); True if it was there.

        The running scaler statistics and the centers keep an anonymous,
        aggregate trace of past samples that cannot be removed individually.
        """
        slot = self._slot_of.pop(key, None)
        if slot is None:
            return False
        last = self._res_n - 1
        if slot != last:
            self._res[slot] = self._res[last]
            moved = self._res_keys[last]
            self._res_keys[slot] = moved
            if moved is not None:
                self._slot_of[moved] = slot
        self._res[last] = np.nan
        self._res_keys[last] = None
        self._res_n = last
        return True

    def predict_one(self, x: Mapping[str, Any]) -> str | None:
        """The nearest cluster id (no hysteresis), or None during warm-up."""
        if self.kmeans is None:
            return None
        v = _clean(x)
        z = {f: 0.0 for f in FEATURES}
        z.update(self.scaler.transform_one(v))
        return self.ids[self.kmeans.predict_one(z)]

    def _offer(self, v: dict[str, float], key: str | None) -> None:
        row = [v.get(f, math.nan) for f in FEATURES]
        if key is not None and key in self._slot_of:
            self._res[self._slot_of[key]] = row
            return
        self._res_seen += 1
        if self._res_n < self.reservoir_size:
            slot = self._res_n
            self._res_n += 1
        else:
            horizon = min(self._res_seen, _RESERVOIR_HORIZON * self.reservoir_size)
            slot = self._pyrng.randrange(horizon)
            if slot >= self.reservoir_size:
                return
            evicted = self._res_keys[slot]
            if evicted is not None:
                del self._slot_of[evicted]
        self._res[slot] = row
        self._res_keys[slot] = key
        if key is not None:
            self._slot_of[key] = slot

    # ------------------------------------------------------------------ batch steps

    def _scale_params(self) -> tuple[np.ndarray, np.ndarray]:
        mean = np.array([self.scaler.means.get(f, 0.0) for f in FEATURES])
        var = np.array([self.scaler.vars.get(f, 0.0) for f in FEATURES])
        return mean, np.sqrt(np.maximum(var, 0.0))

    def _scaled_reservoir(self) -> np.ndarray:
        mean, std = self._scale_params()
        R = self._res[: self._res_n]
        safe = np.where(std > 0, std, 1.0)
        Z = np.where(std > 0, (R - mean) / safe, 0.0)
        return np.nan_to_num(Z, nan=0.0)

    def _current_centers(self) -> np.ndarray:
        assert self.kmeans is not None
        return np.array(
            [[float(self.kmeans.centers[i][f]) for f in FEATURES] for i in range(len(self.ids))]
        )

    def _evaluation_sample(self, n: int) -> np.ndarray:
        if n <= _SILHOUETTE_MAX_POINTS:
            return np.arange(n)
        return np.sort(self._rng.choice(n, _SILHOUETTE_MAX_POINTS, replace=False))

    def _k_range(self) -> range:
        """The ks fitted for the elbow rule: one beyond each bound."""
        return range(self.k_min - 1, self.k_max + 2)

    def _fit_all(
        self, Z: np.ndarray, skip: int | None = None
    ) -> dict[int, tuple[np.ndarray, np.ndarray, float]]:
        fits = {}
        for k in self._k_range():
            if k == skip:
                continue
            if k == 1:
                C = Z.mean(0, keepdims=True)
                fits[k] = (C, np.zeros(len(Z), dtype=np.int64), float(((Z - C) ** 2).sum()))
            else:
                fits[k] = _fit(Z, k, self._rng, self.n_init)
        return fits

    def bends(self, inertia: Mapping[int, float]) -> dict[int, float]:
        """Elbow scores: how sharply the inertia curve bends at each k in [k_min, k_max].

        With ``r(k) = W(k) / W(k - 1)`` (the within-cluster variance kept when
        going from k - 1 to k clusters), ``bend(k) = r(k + 1) - r(k)``: large
        when k clusters explain much more than k - 1 but k + 1 add little.
        ``k_min`` scores at least ``elbow``, so without a clear bend (noise)
        the smallest k wins.
        """
        ks = sorted(inertia)
        env = dict(inertia)
        for prev, k in itertools.pairwise(ks):  # more clusters never fit worse
            env[k] = min(env[k], env[prev])
        ratio = {
            k: (env[k] / env[prev] if env[prev] > 0 else 1.0) for prev, k in itertools.pairwise(ks)
        }
        out = {k: ratio[k + 1] - ratio[k] for k in range(self.k_min, self.k_max + 1)}
        out[self.k_min] = max(out[self.k_min], self.elbow)
        return out

    def _choose_k(self, inertia: Mapping[int, float], current: int | None = None) -> int:
        """The finest significant elbow: the largest k whose bend is significant.

        Customer data are often hierarchical (one far-away group, then the
        finer personas): the *largest* bend would stop at the coarse level.
        ``k_min`` always qualifies (``bends`` floors it), so data without
        structure stay at ``k_min``. The current k is kept while both it and
        the candidate are within ``min_gain`` of the threshold, so k does not
        flip on noise.
        """
        bend = self.bends(inertia)
        # Significant: at least ``elbow`` and at least half the sharpest bend, so
        # the small bends Gaussian noise makes at high k do not count.
        threshold = max(self.elbow, 0.5 * max(bend.values()))
        best = max(k for k in bend if bend[k] >= threshold)
        if (
            current is not None
            and current in bend
            and current != best
            and bend[current] >= threshold - self.min_gain
            and bend[best] < threshold + self.min_gain
        ):
            return current
        return best

    def _write_centers(self, C: np.ndarray, ids: list[str]) -> None:
        km = cluster.KMeans(n_clusters=len(ids), halflife=self.halflife, seed=self.seed)
        # river would start from Gaussian noise: overwrite with our centers.
        km.centers = {
            i: collections.defaultdict(float, {f: float(C[i, j]) for j, f in enumerate(FEATURES)})
            for i in range(len(ids))
        }
        self.kmeans = km
        self.ids = list(ids)

    def _fresh_id(self) -> str:
        cid = f"c{self.next_id}"
        self.next_id += 1
        return cid

    def _event(self, event: dict[str, Any]) -> None:
        event["samples"] = self.samples
        self.events.append(event)
        del self.events[: -self.max_events]

    def _initialise(self) -> None:
        Z = self._scaled_reservoir()
        fits = self._fit_all(Z)
        k = self._choose_k({kk: fit[2] for kk, fit in fits.items()})
        ids = [self._fresh_id() for _ in range(k)]
        self._write_centers(fits[k][0], ids)
        self._record_quality(Z, fits[k][1], {kk: fit[2] for kk, fit in fits.items()})
        self._event({"kind": "init", "k": k, "ids": list(ids)})

    def _record_quality(self, Z: np.ndarray, labels: np.ndarray, inertia: dict[int, float]) -> None:
        idx = self._evaluation_sample(len(Z))
        self.silhouette = silhouette_score(_pairwise(Z[idx]), labels[idx])
        self.inertia = {k: inertia[k] for k in sorted(inertia)}
        self._since_eval = 0

    def reevaluate(self) -> None:
        """Refine the centers on the reservoir and re-choose k (called automatically)."""
        if self.kmeans is None or self._res_n < 2 * self.k_max:
            return
        Z = self._scaled_reservoir()
        k_cur = len(self.ids)
        C_cur, L_cur, w_cur = _lloyd(Z, self._current_centers(), reseed_empty=False)
        fits = self._fit_all(Z, skip=k_cur)
        inertia = {k: fit[2] for k, fit in fits.items()}
        inertia[k_cur] = w_cur
        k = self._choose_k(inertia, current=k_cur)
        if k != k_cur:
            self._adopt(fits[k][0], fits[k][1], C_cur, L_cur)
            self._record_quality(Z, fits[k][1], inertia)
        else:
            self._write_centers(C_cur, list(self.ids))
            self._record_quality(Z, L_cur, inertia)

    def reinitialise(self, k: int | None = None) -> None:
        """Refit from scratch on the reservoir (k given, or chosen), keeping ids by matching.

        Used by operators after a large drift and by tests; the automatic
        re-evaluation only refits from scratch when k changes.
        """
        if self.kmeans is None:
            raise RuntimeError("the learner is still warming up")
        Z = self._scaled_reservoir()
        fits = self._fit_all(Z)
        if k is not None and k not in fits:
            fits[k] = _fit(Z, k, self._rng, self.n_init)
        inertia = {kk: fit[2] for kk, fit in fits.items()}
        chosen = k if k is not None else self._choose_k(inertia)
        C_old = self._current_centers()
        L_old = _sq_dists(Z, C_old).argmin(1)
        self._adopt(fits[chosen][0], fits[chosen][1], C_old, L_old)
        self._record_quality(Z, fits[chosen][1], inertia)

    def _adopt(
        self, C_new: np.ndarray, L_new: np.ndarray, C_old: np.ndarray, L_old: np.ndarray
    ) -> None:
        """Install new centers, matching ids and reporting splits and merges."""
        old_ids = list(self.ids)
        matched = match_centroids(
            {cid: C_old[i].tolist() for i, cid in enumerate(old_ids)}, C_new.tolist()
        )
        k_new, k_old = len(C_new), len(old_ids)
        overlap = np.zeros((k_new, k_old), dtype=np.int64)
        np.add.at(overlap, (L_new, L_old), 1)
        dist = np.sqrt(_sq_dists(C_new, C_old))
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
        for src, fresh in splits.items():
            into = ([src] if src in new_ids else []) + fresh
            self._event({"kind": "split", "from": src, "into": into})
        for dst, retired in merges.items():
            sources = ([dst] if dst in old_ids else []) + retired
            self._event({"kind": "merge", "from": sources, "into": dst})
        self._write_centers(C_new, new_ids)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> dict[str, Any]:
        """Publishable, JSON-serialisable assignment snapshot; bumps ``version``.

        During warm-up ``k`` is 0 and ``centroids`` is empty (assigners then
        return no cluster).
        """
        self.version += 1
        mean, std = self._scale_params()
        profiles: dict[str, dict[str, float]] = {}
        centroids: dict[str, dict[str, float]] = {}
        shares: dict[str, float] = {}
        if self.kmeans is not None:
            C = self._current_centers()
            for i, cid in enumerate(self.ids):
                profiles[cid] = {f: float(C[i, j]) for j, f in enumerate(FEATURES)}
                centroids[cid] = {
                    f: float(mean[j] + std[j] * C[i, j]) for j, f in enumerate(FEATURES)
                }
            if self._res_n:
                labels = _sq_dists(self._scaled_reservoir(), C).argmin(1)
                counts = np.bincount(labels, minlength=len(self.ids))
                shares = {cid: float(counts[i] / self._res_n) for i, cid in enumerate(self.ids)}
        for event in self.events:
            event.setdefault("version", self.version)
        snap: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "version": self.version,
            "model_version": f"km-{self.version}",
            "features": list(FEATURES),
            "mean": {f: float(mean[j]) for j, f in enumerate(FEATURES)},
            "std": {f: float(std[j]) for j, f in enumerate(FEATURES)},
            "centroids": centroids,
            "profiles": profiles,
            "labels": {},
            "shares": shares,
            "k": self.k,
            "samples": self.samples,
            "next_id": self.next_id,
            "quality": {
                "silhouette": self.silhouette,
                "inertia": {str(k): w for k, w in self.inertia.items()},
            },
            "events": [dict(e) for e in self.events],
        }
        snap["labels"] = {cid: d["label"] for cid, d in describe_clusters(snap).items()}
        return snap

    # ------------------------------------------------------------------ persistence

    def to_bytes(self) -> bytes:
        """Serialise the whole learner state (pickle; only load bytes you wrote)."""
        return pickle.dumps({"format": FORMAT_VERSION, "state": self.__dict__}, protocol=5)

    @classmethod
    def from_bytes(cls, data: bytes) -> SegmentLearner:
        """Restore a learner written by :meth:`to_bytes`; it continues identically."""
        payload = pickle.loads(data)  # our own internal state, never foreign bytes
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
            raise ValueError("unsupported SegmentLearner state format")
        missing = set(cls().__dict__) - set(payload["state"])
        if missing:
            # Written by another release whose layout differs: refuse, never half-restore.
            raise ValueError(f"SegmentLearner state lacks {sorted(missing)}")
        learner = cls.__new__(cls)
        learner.__dict__.update(payload["state"])
        return learner

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any], **params: Any) -> SegmentLearner:
        """Resume learning from a published snapshot (e.g. after losing the learner state).

        Scaler statistics, centers, ids, versions and events are restored; the
        reservoir starts empty and fills again before the next re-evaluation.
        """
        learner = cls(**params)
        n = int(snapshot.get("samples", 0))
        std = snapshot.get("std", {})
        for f, m in snapshot.get("mean", {}).items():
            if f in FEATURES and n:
                learner.scaler.counts[f] = n
                learner.scaler.means[f] = float(m)
                learner.scaler.vars[f] = float(std.get(f, 0.0)) ** 2
        learner.samples = n
        learner.version = int(snapshot.get("version", 0))
        learner.next_id = int(snapshot.get("next_id", 0))
        learner.events = [dict(e) for e in snapshot.get("events", [])]
        profiles = snapshot.get("profiles") or {}
        if profiles:
            ids = list(profiles)
            C = np.array([[float(profiles[c].get(f, 0.0)) for f in FEATURES] for c in ids])
            learner._write_centers(C, ids)
            learner.silhouette = (snapshot.get("quality") or {}).get("silhouette")
            learner.next_id = max(learner.next_id, *(int(c[1:]) + 1 for c in ids))
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
        closer by this relative margin (0.1 = 10 % closer).

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
    >>> cid, round(margin, 3)  # c1 is closer, but by < 10 %: stay in c0
    ('c0', -0.105)
    >>> SegmentAssigner.from_snapshot({"profiles": {}}).assign({"a": 1.0})
    (None, 0.0, [])
    """

    def __init__(self, snapshot: Mapping[str, Any], hysteresis: float = 0.1) -> None:
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
    def from_snapshot(cls, snapshot: Mapping[str, Any], hysteresis: float = 0.1) -> SegmentAssigner:
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
        self, x: Mapping[str, Any], current: str | None = None
    ) -> tuple[str | None, float, list[str]]:
        """Assign a clustering vector to a cluster.

        Parameters
        ----------
        x
            A :func:`~models.cluster_vector.cluster_vector` dict.
        current
            The customer's current cluster id, for hysteresis; a retired id is
            mapped to its successor through the snapshot's merge events.

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
        return self.ids[chosen], margin, self._reasons(z, chosen, d2, alt)

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
