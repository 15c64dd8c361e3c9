"""Which criterion chooses the number of clusters well? ``python -m streams.tools.k_criteria``.

For simulated populations whose personas are known (``streams.tools.persona_modes``:
separated, overlapping at several degrees, the default mix) and for two kinds
of structureless noise, every customer's final clustering vector is
standardised (unknown values at the mean, as the learner does) and each
criterion picks k in 2..8:

* ``elbow``: the rule the learner used before (the finest significant bend of
  the k-means inertia curve);
* ``silhouette``: the k with the largest mean silhouette;
* ``calinski``: the largest Calinski-Harabasz index;
* ``gap``: Tibshirani's gap statistic (uniform reference in the principal-axes
  box, 1-standard-error rule);
* ``bic``: the smallest BIC of a diagonal Gaussian mixture (scikit-learn);
* ``stability``: the largest k whose stability across resamples
  (:func:`models.k_selection.stability`) is within 0.02 of the best;
* ``chosen``: :func:`models.k_selection.choose_k`, the best silhouette among
  the ks that are reproducible (stability >= 0.8) and have no cluster below
  2 % of the customers: what the learner uses.

The report gives each criterion's k and the adjusted Rand index (ARI) of
batch k-means with that k against the personas, next to k-means with the
true k. Needs scikit-learn (a dev dependency). Results: ``docs/clustering.md``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models import features
from models.cluster_vector import FEATURES, cluster_vector
from models.clustering import silhouette_score
from models.eventtime import MS_PER_DAY, parse_ts
from models.k_selection import adjusted_rand_index, choose_k, smallest_share, stability
from models.kmeans import fit
from streams.tools.persona_modes import SEPARATED, blend, simulation
from streams.tools.quality import standardise
from streams.tools.simulator import Simulation

__all__ = ["CRITERIA", "Dataset", "final_vectors", "main", "run"]

KS = tuple(range(2, 9))


@dataclass
class Dataset:
    """Standardised vectors and the truth (None for noise)."""

    name: str
    Z: np.ndarray
    truth: list[str] | None


def final_vectors(sim: Simulation) -> tuple[list[str], list[dict[str, float]]]:
    """Each customer's persona and clustering vector at the end of the simulation.

    Features only (no segments, no model): the batch view of the population.
    """
    states: dict[str, dict] = {}
    for topic, event in sim.events():
        ts = event["ts"] if type(event["ts"]) is int else parse_ts(event["ts"])
        state = states.get(event["customer_id"])
        if state is None:
            state = states[event["customer_id"]] = features.new_state()
        features.apply_event(state, topic, dict(event, ts=ts))
    end = sim.start_ms + sim.days * MS_PER_DAY
    truth = {c: t["persona"] for c, t in sim.ground_truth().items()}
    ids = sorted(states)
    return [truth[c] for c in ids], [
        cluster_vector(features.read_features(states[c], end)) for c in ids
    ]


def _elbow(inertia: dict[int, float], elbow: float = 0.05) -> int:
    ks = sorted(inertia)
    env = dict(inertia)
    for prev, k in itertools.pairwise(ks):
        env[k] = min(env[k], env[prev])
    ratio = {k: env[k] / env[prev] for prev, k in itertools.pairwise(ks)}
    bend = {k: ratio[k + 1] - ratio[k] for k in KS}
    bend[KS[0]] = max(bend[KS[0]], elbow)
    threshold = max(elbow, 0.5 * max(bend.values()))
    return max(k for k in bend if bend[k] >= threshold)


def _calinski(Z: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> float:
    k = len(centers)
    mean = Z.mean(0)
    counts = np.bincount(labels, minlength=k)
    between = float((counts * ((centers - mean) ** 2).sum(1)).sum())
    within = float(((Z - centers[labels]) ** 2).sum())
    return between / (k - 1) / (within / (len(Z) - k)) if within > 0 else 0.0


def _gap(Z: np.ndarray, inertia: dict[int, float], rng: np.random.Generator, refs: int = 5) -> int:
    centred = Z - Z.mean(0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    X = centred @ axes.T
    lo, hi = X.min(0), X.max(0)
    ks = sorted(inertia)
    logs: dict[int, list[float]] = {k: [] for k in ks}
    for _ in range(refs):
        R = rng.uniform(lo, hi, size=X.shape) @ axes
        for k in ks:
            logs[k].append(float(np.log(fit(R, k, rng, 2)[2])))
    gap = {k: float(np.mean(logs[k])) - float(np.log(inertia[k])) for k in ks}
    se = {k: float(np.std(logs[k])) * np.sqrt(1 + 1 / refs) for k in ks}
    for k, nxt in itertools.pairwise(ks):
        if k >= KS[0] and gap[k] >= gap[nxt] - se[nxt]:
            return k
    return ks[-1]


def _bic(Z: np.ndarray) -> int:
    from sklearn.mixture import GaussianMixture

    scores = {
        k: GaussianMixture(k, covariance_type="diag", n_init=2, random_state=0).fit(Z).bic(Z)
        for k in KS
    }
    return min(scores, key=scores.__getitem__)


def choices(Z: np.ndarray, seed: int = 0) -> tuple[dict[str, int], dict[int, np.ndarray]]:
    """Every criterion's k, and the k-means labels per k."""
    rng = np.random.default_rng(seed)
    fits = {k: fit(Z, k, rng, 4) for k in range(1, KS[-1] + 2)}
    inertia = {k: f[2] for k, f in fits.items()}
    labels = {k: f[1] for k, f in fits.items()}
    sample = rng.choice(len(Z), min(len(Z), 2000), replace=False)
    dist = np.sqrt(np.maximum(((Z[sample, None] - Z[None, sample]) ** 2).sum(-1), 0.0))
    silhouette = {k: silhouette_score(dist, labels[k][sample]) for k in KS}
    calinski = {k: _calinski(Z, labels[k], fits[k][0]) for k in KS}
    stable = {k: stability(Z, k, rng) for k in KS}
    shares = {k: smallest_share(labels[k], k) for k in KS}
    out = {
        "elbow": _elbow(inertia),
        "silhouette": max(silhouette, key=silhouette.__getitem__),
        "calinski": max(calinski, key=calinski.__getitem__),
        "gap": _gap(Z, {k: inertia[k] for k in range(1, KS[-1] + 2)}, rng),
        "bic": _bic(Z),
        "stability": _largest_stable(stable, shares),
        "chosen": choose_k(silhouette, stable, shares, k_min=KS[0]),
    }
    return out, labels


def _largest_stable(stable: dict[int, float], shares: dict[int, float]) -> int:
    """The largest k within 0.02 of the most reproducible one (no slivers, >= 0.8)."""
    ok = {k: s for k, s in stable.items() if s >= 0.8 and shares[k] >= 0.02}
    if not ok:
        return KS[0]
    best = max(ok.values())
    return max(k for k, s in ok.items() if s >= best - 0.02)


CRITERIA = ("elbow", "silhouette", "calinski", "gap", "bic", "stability", "chosen")


def datasets(
    customers: int, days: int, seeds: Sequence[int], overlaps: Sequence[float]
) -> list[Callable[[], Dataset]]:
    """Lazy builders of every dataset of the comparison."""
    out: list[Callable[[], Dataset]] = []

    def persona_set(overlap: float, seed: int) -> Callable[[], Dataset]:
        def build() -> Dataset:
            sim = simulation("separated", customers, days, seed)
            if overlap > 0:
                sim = Simulation(
                    customers=customers,
                    days=days,
                    seed=seed,
                    catalogue=blend(SEPARATED, overlap),
                    personas=dict(sim.personas),
                    churn_fraction=sim.churn_fraction,
                )
            truth, vectors = final_vectors(sim)
            Z = standardise([[v.get(f) for f in FEATURES] for v in vectors])
            return Dataset(f"personas, overlap {overlap:.1f}, seed {seed}", Z, truth)

        return build

    def default(seed: int) -> Callable[[], Dataset]:
        def build() -> Dataset:
            truth, vectors = final_vectors(Simulation(customers=customers, days=days, seed=seed))
            Z = standardise([[v.get(f) for f in FEATURES] for v in vectors])
            return Dataset(f"default mix, seed {seed}", Z, truth)

        return build

    def noise(kind: str) -> Callable[[], Dataset]:
        def build() -> Dataset:
            rng = np.random.default_rng(1)
            shape = (customers, len(FEATURES))
            X = rng.normal(size=shape) if kind == "gaussian" else rng.lognormal(0, 1, shape)
            return Dataset(f"noise ({kind})", standardise(X.tolist()), None)

        return build

    for overlap in overlaps:
        out.extend(persona_set(overlap, seed) for seed in seeds)
    out.extend(default(seed) for seed in seeds)
    out.extend([noise("gaussian"), noise("lognormal")])
    return out


def run(
    customers: int, days: int, seeds: Sequence[int], overlaps: Sequence[float], out: object = None
) -> list[str]:
    """Run the comparison; return (and print) the markdown table rows."""
    stream: Any = out if out is not None else sys.stdout
    header = (
        "| data | true k: ARI | " + " | ".join(CRITERIA) + " |\n|---|---|" + "---|" * len(CRITERIA)
    )
    print(header, file=stream, flush=True)
    rows = []
    for build in datasets(customers, days, seeds, overlaps):
        started = time.perf_counter()
        data = build()
        picked, labels = choices(data.Z)
        if data.truth is None:
            cells = [f"k={picked[c]}" for c in CRITERIA]
            true_cell = "—"
        else:
            k_true = len(set(data.truth))
            true_cell = f"{_ari(labels[k_true], data.truth):.2f}"
            cells = [f"k={picked[c]}: {_ari(labels[picked[c]], data.truth):.2f}" for c in CRITERIA]
        row = f"| {data.name} | {true_cell} | " + " | ".join(cells) + " |"
        rows.append(row)
        print(row, f"<!-- {time.perf_counter() - started:.0f} s -->", file=stream, flush=True)
    return rows


def _ari(labels: np.ndarray, truth: list[str]) -> float:
    _, codes = np.unique(np.asarray(truth), return_inverse=True)
    return adjusted_rand_index(labels, codes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.tools.k_criteria", description=__doc__)
    parser.add_argument("--customers", type=int, default=1500)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 11])
    parser.add_argument("--overlaps", type=float, nargs="+", default=[0.0, 0.3, 0.4, 0.5, 0.6, 0.7])
    args = parser.parse_args(argv)
    run(args.customers, args.days, args.seeds, args.overlaps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
