"""Choosing the number of clusters: the best-separated k among the reproducible ones.

Two questions decide k. Is the partition *reproducible*? For each candidate
k, :func:`stability` clusters pairs of random subsamples independently,
assigns every customer with both, and measures how well the two partitions
agree (adjusted Rand index, ARI: 1 = identical, ~0 = unrelated); segments
that a resample reshuffles are noise, and campaigns keyed on them chase it.
And among the reproducible ks, which one *separates* the customers best? The
mean silhouette (how much closer each customer is to their own cluster than
to the next one). :func:`choose_k` takes the k with the best silhouette among
those whose stability reaches ``min_stability`` and whose smallest cluster
holds at least ``min_share`` of the customers (no slivers): the
over-segmentation guard. Data without structure (noise) reproduce no
partition and stay at ``k_min``.

Why this rule (measured in ``docs/clustering.md``, "Choosing k", with
``python -m streams.tools.k_criteria``): on well-separated personas the silhouette,
the elbow rule, Calinski-Harabasz and stability all find the true k; the gap
statistic and the BIC of a Gaussian mixture over-segment (k = 6-8: the
dimensions are skewed and partly discrete). On overlapping personas the
plain silhouette and the largest stable k sometimes settle for k = 2 (a
far-away group, customers who lapse, against the rest), while the silhouette
restricted to reproducible ks kept a k whose partition matches the personas
at least as well as the true k does, up to the overlap where the finer
groups stop being reproducible.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> centers = np.array([[0, 0], [6, 0], [0, 6]])
>>> Z = np.vstack([rng.normal(c, 0.5, (60, 2)) for c in centers])
>>> stable = {k: stability(Z, k, np.random.default_rng(1)) for k in (2, 3, 4)}
>>> round(stable[3], 2), stable[3] > stable[4]
(1.0, True)
>>> choose_k({2: 0.55, 3: 0.78, 4: 0.6}, stable, {2: 0.33, 3: 0.33, 4: 0.2}, k_min=2)
3
>>> noise = np.random.default_rng(2).normal(size=(300, 6))
>>> noisy = {k: stability(noise, k, np.random.default_rng(3)) for k in (2, 3, 4)}
>>> choose_k({2: 0.2, 3: 0.19, 4: 0.18}, noisy, {}, k_min=2), max(noisy.values()) < 0.8
(2, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from models.kmeans import fit, nearest

__all__ = ["adjusted_rand_index", "choose_k", "smallest_share", "stability"]


def adjusted_rand_index(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> float:
    """Adjusted Rand index of two labelings of the same points (integer labels).

    Examples
    --------
    >>> adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    >>> round(adjusted_rand_index([0, 1, 0, 1], [0, 0, 1, 1]), 3)
    -0.5
    """
    _, x = np.unique(np.asarray(a), return_inverse=True)
    _, y = np.unique(np.asarray(b), return_inverse=True)
    n = len(x)
    if n < 2:
        return 1.0
    table = np.zeros((x.max() + 1, y.max() + 1), dtype=np.int64)
    np.add.at(table, (x, y), 1)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) // 2).sum())

    index = pairs(table)
    rows, cols = pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (n * (n - 1) / 2)
    maximum = (rows + cols) / 2
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def stability(
    Z: np.ndarray,
    k: int,
    rng: np.random.Generator,
    pairs: int = 5,
    fraction: float = 0.8,
    n_init: int = 2,
) -> float:
    """Mean ARI between k-means partitions of ``pairs`` pairs of random subsamples.

    Each subsample holds ``fraction`` of the rows of ``Z``; both fits assign
    every row, and the ARI of the two assignments is averaged over the pairs.
    """
    n = len(Z)
    size = max(k + 1, round(n * fraction))
    if n <= k or size > n:
        return 0.0
    scores = []
    for _ in range(pairs):
        first = rng.choice(n, size, replace=False)
        second = rng.choice(n, size, replace=False)
        a = nearest(Z, fit(Z[first], k, rng, n_init)[0])
        b = nearest(Z, fit(Z[second], k, rng, n_init)[0])
        scores.append(adjusted_rand_index(a, b))
    return float(np.mean(scores))


def smallest_share(labels: np.ndarray, k: int) -> float:
    """Share of the points in the smallest of ``k`` clusters (0 if one is empty).

    >>> smallest_share(np.array([0, 0, 0, 1]), 2)
    0.25
    """
    if len(labels) == 0:
        return 0.0
    return float(np.bincount(labels, minlength=k)[:k].min() / len(labels))


def choose_k(
    silhouettes: Mapping[int, float],
    stabilities: Mapping[int, float],
    smallest_shares: Mapping[int, float],
    k_min: int,
    current: int | None = None,
    min_stability: float = 0.8,
    min_share: float = 0.02,
    tolerance: float = 0.01,
) -> int:
    """The best-separated reproducible k: see the module docstring.

    Among the eligible ks (stability and smallest cluster large enough), the
    *smallest* whose silhouette is within ``tolerance`` of the best: two
    partitions that separate the customers equally well are not worth the
    extra segment. The ``current`` k is kept while it is eligible and within
    ``tolerance`` of the best, so k only moves when another k separates the
    customers better by more than ``tolerance`` (no flip-flop between two
    equally good values, week after week).

    Parameters
    ----------
    silhouettes
        Mean silhouette of the k-means partition per candidate k.
    stabilities
        :func:`stability` per candidate k.
    smallest_shares
        Share of the smallest cluster of the full fit per k (missing = no limit).
    k_min
        Returned when no candidate is reproducible (noise) or all have slivers.
    """
    eligible = {
        k: silhouettes[k]
        for k in silhouettes
        if stabilities.get(k, 0.0) >= min_stability and smallest_shares.get(k, 1.0) >= min_share
    }
    if not eligible:
        return k_min
    best = max(eligible.values())
    if current is not None and eligible.get(current, -1.0) >= best - tolerance:
        return current
    return min(k for k, s in eligible.items() if s >= best - tolerance)
