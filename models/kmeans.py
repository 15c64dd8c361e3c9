"""Batch k-means in numpy: k-means++ seeding and Lloyd iterations.

The small, deterministic building blocks of the cluster learner
(:mod:`models.clustering`) and of the choice of k (:mod:`models.k_selection`).
Every random choice comes from the ``numpy.random.Generator`` passed in.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> Z = np.vstack([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
>>> centers, labels, inertia = fit(Z, 2, rng, n_init=2)
>>> sorted(np.round(centers[:, 0]).tolist()) == [0.0, 5.0], len(set(labels[:20])), inertia < 2
(True, 1, True)
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit", "kmeans_pp", "lloyd", "nearest", "sq_dists"]


def sq_dists(Z: np.ndarray, C: np.ndarray, zz: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances between the rows of Z (n x d) and C (k x d)."""
    if zz is None:
        zz = np.einsum("ij,ij->i", Z, Z)
    d2 = zz[:, None] - 2.0 * (Z @ C.T) + np.einsum("ij,ij->i", C, C)[None, :]
    return np.maximum(d2, 0.0, out=d2)


def nearest(Z: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Index of the nearest center for every row of Z."""
    return np.asarray(sq_dists(Z, C).argmin(1))


def lloyd(
    Z: np.ndarray, C: np.ndarray, max_iter: int = 50, reseed_empty: bool = True
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd iterations from centers C; returns (centers, labels, inertia).

    An empty cluster is re-seeded at the point worst served by its center
    (``reseed_empty``), or keeps its center.
    """
    C = np.array(C, dtype=float, copy=True)
    k = len(C)
    zz = np.einsum("ij,ij->i", Z, Z)
    labels = np.full(len(Z), -1)
    for _ in range(max_iter):
        d2 = sq_dists(Z, C, zz)
        new_labels = d2.argmin(1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(C)
        np.add.at(sums, labels, Z)
        filled = counts > 0
        C[filled] = sums[filled] / counts[filled, None]
        if reseed_empty and not filled.all():
            worst = np.argsort(-d2[np.arange(len(Z)), labels])
            for j, idx in zip(np.flatnonzero(~filled), worst, strict=False):
                C[j] = Z[idx]
    d2 = sq_dists(Z, C, zz)
    labels = d2.argmin(1)
    inertia = float(d2[np.arange(len(Z)), labels].sum())
    return C, labels, inertia


def kmeans_pp(Z: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding: D^2 sampling, best of ``2 + log k`` candidates per center.

    The greedy variant (as in scikit-learn) seldom puts two seeds in one
    group, so a couple of restarts find the global optimum on clear data.
    """
    n = len(Z)
    trials = 2 + int(np.log(k))
    zz = np.einsum("ij,ij->i", Z, Z)
    centers = [Z[rng.integers(n)]]
    closest = sq_dists(Z, np.asarray(centers), zz)[:, 0]
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:
            idx = rng.integers(n, size=trials)
        else:
            idx = np.searchsorted(np.cumsum(closest), rng.random(trials) * total)
            idx = np.minimum(idx, n - 1)
        candidates = np.minimum(closest[None, :], sq_dists(Z[idx], Z, zz[idx]))
        best = int(candidates.sum(1).argmin())
        centers.append(Z[idx[best]])
        closest = candidates[best]
    return np.asarray(centers)


def fit(
    Z: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 4
) -> tuple[np.ndarray, np.ndarray, float]:
    """Best of ``n_init`` k-means++ + Lloyd runs: (centers, labels, inertia)."""
    if k == 1:
        C = Z.mean(0, keepdims=True)
        return C, np.zeros(len(Z), dtype=np.int64), float(((Z - C) ** 2).sum())
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(max(1, n_init)):
        result = lloyd(Z, kmeans_pp(Z, k, rng))
        if best is None or result[2] < best[2]:
            best = result
    assert best is not None
    return best
