"""Tests for models.clustering (learner, assigner, ids, k choice, quality)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from models.cluster_labels import describe_clusters
from models.cluster_vector import FEATURES, cluster_vector
from models.clustering import (
    SegmentAssigner,
    SegmentLearner,
    match_centroids,
    silhouette_score,
)

D = len(FEATURES)


def blobs(centers: np.ndarray, n: int, std: float, rng: np.random.Generator, weights=None):
    """Points around ``centers`` (k x D) as cluster-vector dicts, with true labels."""
    k = len(centers)
    labels = rng.choice(k, size=n, p=weights)
    X = centers[labels] + rng.normal(0.0, std, size=(n, centers.shape[1]))
    return [dict(zip(FEATURES, row.tolist(), strict=True)) for row in X], labels


def separated_centers(k: int, rng: np.random.Generator, scale: float = 8.0) -> np.ndarray:
    """k well-separated centers in D dimensions (pairwise distance >= scale)."""
    while True:
        C = rng.uniform(-scale, scale, size=(k, D))
        dist = np.sqrt(((C[:, None] - C[None]) ** 2).sum(-1)) + np.eye(k) * 1e9
        if dist.min() >= scale:
            return C


def nearest_blob(centroid: dict[str, float], centers: np.ndarray) -> int:
    v = np.array([centroid[f] for f in FEATURES])
    return int(((centers - v) ** 2).sum(1).argmin())


# --------------------------------------------------------------------- cluster_vector


def test_cluster_vector_personas_are_ordered_sensibly():
    loyal = cluster_vector(
        {
            "orders": 20,
            "orders_90d": 5,
            "T": 500,
            "avg_order_value": 180.0,
            "product_views_30d": 10,
            "cart_adds": 25,
            "tickets": 1,
            "tickets_90d": 0,
            "escalations": 0,
            "nps_avg": 9.5,
            "csat_avg": 4.8,
            "days_since_last_event": 3,
        }
    )
    bargain = cluster_vector(
        {
            "orders": 60,
            "orders_90d": 15,
            "T": 400,
            "avg_order_value": 18.0,
            "product_views_30d": 120,
            "cart_adds": 150,
            "tickets": 2,
            "tickets_90d": 1,
            "escalations": 0,
            "nps_avg": None,
            "days_since_last_event": 1,
        }
    )
    window = cluster_vector(
        {
            "orders": 0,
            "orders_90d": 0,
            "T": None,
            "avg_order_value": None,
            "product_views_30d": 90,
            "cart_adds": 40,
            "tickets": 0,
            "days_since_last_event": 2,
        }
    )
    detractor = cluster_vector(
        {
            "orders": 8,
            "orders_90d": 2,
            "T": 300,
            "avg_order_value": 70.0,
            "tickets": 9,
            "tickets_90d": 5,
            "escalations": 4,
            "nps_avg": 2.0,
            "csat_avg": 1.5,
            "days_since_last_event": 5,
        }
    )
    new = cluster_vector({"orders": 1, "orders_90d": 1, "T": 4, "avg_order_value": 60.0})
    assert loyal["order_value"] > detractor["order_value"] > bargain["order_value"]
    assert bargain["purchase_rate"] > loyal["purchase_rate"] > window["purchase_rate"] == 0.0
    assert window["cart_conversion"] < 0.05 < loyal["cart_conversion"]
    assert "order_value" not in window and "tenure" not in window
    assert detractor["support_load"] > bargain["support_load"] > loyal["support_load"]
    assert detractor["escalation_share"] > 0.4 and loyal["escalation_share"] == 0.0
    assert detractor["sentiment"] < 0 < loyal["sentiment"] and bargain["sentiment"] == 0.0
    assert new["tenure"] < loyal["tenure"]
    for v in (loyal, bargain, window, detractor, new):
        assert set(v) <= set(FEATURES)
        assert all(math.isfinite(x) for x in v.values())


def test_cluster_vector_tolerates_nones_and_junk():
    v = cluster_vector({name: None for name in ("orders", "T", "revenue", "nps_avg")})
    assert v == {
        "purchase_rate": 0.0,
        "browse_intensity": 0.0,
        "support_load": 0.0,
        "escalation_share": 0.0,
        "sentiment": 0.0,
    }
    assert (
        cluster_vector({"orders": True, "nps_avg": float("nan"), "tickets": "3"})["sentiment"]
        == 0.0
    )


def test_learner_rejects_raw_features():
    learner = SegmentLearner()
    with pytest.raises(ValueError, match="cluster_vector"):
        learner.learn_one({"orders": 3, "revenue": 50.0})


# --------------------------------------------------------------------- warm start


def test_warm_start_no_clusters_before_warmup_then_centers_on_data():
    rng = np.random.default_rng(1)
    C = separated_centers(3, rng)
    xs, _ = blobs(C, 1000, 0.5, rng)
    learner = SegmentLearner(warmup=300, reservoir_size=600, seed=3)
    learner.learn_many(xs[:299])
    assert not learner.ready and learner.k == 0
    assert learner.predict_one(xs[0]) is None
    snap = learner.snapshot()
    assert snap["k"] == 0 and snap["centroids"] == {} and snap["labels"] == {}
    assigner = SegmentAssigner.from_snapshot(json.loads(json.dumps(snap)))
    assert not assigner.ready
    assert assigner.assign(xs[0], current=None) == (None, 0.0, [])
    learner.learn_one(xs[299])
    assert learner.ready and learner.k == 3
    assert learner.events[-1]["kind"] == "init"
    # Centers come from k-means++ on data (one per blob), not from random noise.
    snap = learner.snapshot()
    hit = sorted(nearest_blob(c, C) for c in snap["centroids"].values())
    assert hit == [0, 1, 2]
    for cid, centroid in snap["centroids"].items():
        v = np.array([centroid[f] for f in FEATURES])
        assert np.abs(v - C[nearest_blob(centroid, C)]).max() < 0.5, cid


# --------------------------------------------------------------------- stability


BLOB_PARAMS = {"warmup": 400, "reservoir_size": 600, "reevaluate_every": 1000, "seed": 5}


def _blob_data(seed: int = 7, n: int = 2500):
    rng = np.random.default_rng(seed)
    C = separated_centers(4, rng)
    xs, labels = blobs(C, n, 0.8, rng)
    return xs, labels, C, rng


@pytest.fixture(scope="module")
def trained():
    """A learner trained on 4 blobs (as bytes: every test restores its own copy)."""
    xs, _, C, rng = _blob_data()
    learner = SegmentLearner(**BLOB_PARAMS)
    learner.learn_many(xs)
    return learner.to_bytes(), xs, C, rng


def test_same_seed_same_data_same_snapshot():
    xs, _, _, _ = _blob_data(n=1500)
    a = SegmentLearner(**BLOB_PARAMS)
    b = SegmentLearner(**BLOB_PARAMS)
    a.learn_many(xs)
    b.learn_many(xs)
    assert a.k == 4
    assert json.dumps(a.snapshot(), sort_keys=True) == json.dumps(b.snapshot(), sort_keys=True)


def test_continued_learning_keeps_ids(trained):
    data, _, C, rng = trained
    learner = SegmentLearner.from_bytes(data)
    before = {cid: nearest_blob(c, C) for cid, c in learner.snapshot()["centroids"].items()}
    assert learner.k == 4 and sorted(before.values()) == [0, 1, 2, 3]
    more, _ = blobs(C, 3000, 0.8, rng)
    learner.learn_many(more)  # three more re-evaluations
    after = {cid: nearest_blob(c, C) for cid, c in learner.snapshot()["centroids"].items()}
    assert after == before
    assert [e["kind"] for e in learner.events] == ["init"]


def test_forced_reinit_keeps_ids_by_matching(trained):
    data, _, C, _ = trained
    learner = SegmentLearner.from_bytes(data)
    before = {cid: nearest_blob(c, C) for cid, c in learner.snapshot()["centroids"].items()}
    order_before = list(learner.ids)
    permuted = False
    for _ in range(5):
        learner.reinitialise(k=4)
        after = {cid: nearest_blob(c, C) for cid, c in learner.snapshot()["centroids"].items()}
        assert after == before
        permuted |= list(learner.ids) != order_before
    # k-means++ finds the blobs in a different order at least once; ids still follow them.
    assert permuted
    assert learner.next_id == 4  # no id was minted


def test_match_centroids_recovers_permutations():
    rng = np.random.default_rng(0)
    for k in range(2, 9):
        old = rng.normal(size=(k, D)) * 5
        ids = [f"c{i + 10}" for i in range(k)]
        perm = rng.permutation(k)
        new = old[perm] + rng.normal(scale=0.1, size=(k, D))
        got = match_centroids(dict(zip(ids, old.tolist(), strict=True)), new.tolist())
        assert got == [ids[p] for p in perm]


# --------------------------------------------------------------------- k selection


@pytest.mark.parametrize("true_k", [3, 5, 7])
def test_k_selection_finds_true_k_on_separated_blobs(true_k):
    rng = np.random.default_rng(true_k)
    C = separated_centers(true_k, rng, scale=6.0)
    xs, _ = blobs(C, 1500, 1.0, rng)
    learner = SegmentLearner(warmup=600, reservoir_size=800, reevaluate_every=600, seed=1)
    learner.learn_many(xs)
    assert learner.k == true_k
    assert learner.silhouette is not None and learner.silhouette > 0.5


def test_k_selection_on_noise_stays_small_and_within_bounds():
    rng = np.random.default_rng(3)
    xs = [dict(zip(FEATURES, row.tolist(), strict=True)) for row in rng.normal(size=(1500, D))]
    learner = SegmentLearner(warmup=500, reservoir_size=600, reevaluate_every=500, seed=2)
    learner.learn_many(xs)
    assert 2 <= learner.k <= 8
    assert learner.k <= 3  # no structure: parsimony keeps k small
    uniform = [dict(zip(FEATURES, row.tolist(), strict=True)) for row in rng.uniform(size=(800, D))]
    bounded = SegmentLearner(k_max=4, warmup=500, reservoir_size=600, seed=2)
    bounded.learn_many(uniform)
    assert 2 <= bounded.k <= 4


def test_k_never_exceeds_k_max():
    rng = np.random.default_rng(11)
    C = separated_centers(6, rng)
    xs, _ = blobs(C, 1000, 0.5, rng)
    for k_max in (3, 4):
        learner = SegmentLearner(
            k_min=2, k_max=k_max, warmup=400, reservoir_size=600, reevaluate_every=300, seed=1
        )
        learner.learn_many(xs)
        assert 2 <= learner.k <= k_max
        assert set(learner.bends(learner.inertia)) == set(range(2, k_max + 1))


def test_silhouette_matches_sklearn():
    from sklearn.metrics import silhouette_score as sk_silhouette

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(300, 4))
    labels = rng.integers(0, 3, size=300)
    labels[:50] = 0
    D_ = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))
    assert silhouette_score(D_, labels) == pytest.approx(sk_silhouette(Z, labels), abs=1e-9)


# --------------------------------------------------------------------- split / merge


def _drift_learner():
    # Re-evaluated once every customer has published the new behaviour (at 1500 samples);
    # while a change is half-done the reservoir genuinely holds old and new groups.
    return SegmentLearner(warmup=300, reservoir_size=600, reevaluate_every=1200, seed=4)


def _customers(centers: np.ndarray, owner: np.ndarray, rng: np.random.Generator):
    """One vector per customer (customer i around centers[owner[i]]), with keys."""
    X = centers[owner] + rng.normal(0.0, 0.6, size=(len(owner), D))
    xs = [dict(zip(FEATURES, row.tolist(), strict=True)) for row in X]
    return xs, [f"cust{i}" for i in range(len(owner))]


def test_split_is_reported_and_keeps_the_parent_id():
    rng = np.random.default_rng(21)
    base = separated_centers(3, rng, scale=12.0)
    owner = rng.integers(0, 3, size=600)
    learner = _drift_learner()
    learner.learn_many(*_customers(base, owner, rng))
    assert learner.k == 3
    parent = {nearest_blob(c, base): cid for cid, c in learner.snapshot()["centroids"].items()}[0]
    # The customers of blob 0 change behaviour: half of them move one way, half the other.
    offset = np.zeros(D)
    offset[:2] = 6.0
    phase2 = np.vstack([base, base[0] - offset, base[0] + offset])
    moved = np.where(owner == 0, 3 + rng.integers(0, 2, size=600), owner)
    for _ in range(2):
        learner.learn_many(*_customers(phase2, moved, rng))
    assert learner.k == 4
    splits = [e for e in learner.events if e["kind"] == "split"]
    assert len(splits) == 1 and not any(e["kind"] == "merge" for e in learner.events)
    assert splits[0]["from"] == parent
    assert splits[0]["into"] == [parent, "c3"]
    snap = learner.snapshot()
    assert sorted(snap["centroids"]) == ["c0", "c1", "c2", "c3"]
    assert splits[0]["version"] == snap["version"]


def test_merge_is_reported_and_assigner_maps_retired_ids():
    rng = np.random.default_rng(22)
    base = separated_centers(4, rng, scale=12.0)
    owner = rng.integers(0, 4, size=600)
    learner = _drift_learner()
    learner.learn_many(*_customers(base, owner, rng))
    assert learner.k == 4
    by_blob = {nearest_blob(c, base): cid for cid, c in learner.snapshot()["centroids"].items()}
    # The customers of blobs 2 and 3 converge to the same behaviour.
    middle = (base[2] + base[3]) / 2
    phase2 = np.vstack([base, middle])
    moved = np.where(owner >= 2, 4, owner)
    for _ in range(2):
        learner.learn_many(*_customers(phase2, moved, rng))
    assert learner.k == 3
    merges = [e for e in learner.events if e["kind"] == "merge"]
    assert len(merges) == 1 and not any(e["kind"] == "split" for e in learner.events)
    assert sorted(merges[0]["from"]) == sorted([by_blob[2], by_blob[3]])
    survivor = merges[0]["into"]
    retired = ({by_blob[2], by_blob[3]} - {survivor}).pop()
    snap = json.loads(json.dumps(learner.snapshot()))
    assert retired not in snap["centroids"] and survivor in snap["centroids"]
    assigner = SegmentAssigner.from_snapshot(snap)
    assert assigner.resolve(retired) == survivor
    x = dict(zip(FEATURES, middle.tolist(), strict=True))
    assert assigner.assign(x, current=retired)[0] == survivor
    # untouched clusters kept their ids
    assert {by_blob[0], by_blob[1]} <= set(snap["centroids"])


def test_merge_and_split_via_forced_reinit(trained):
    learner = SegmentLearner.from_bytes(trained[0])
    learner.reinitialise(k=3)
    merge = learner.events[-1]
    assert merge["kind"] == "merge" and len(merge["from"]) == 2
    assert merge["into"] in merge["from"]
    learner.reinitialise(k=4)
    split = learner.events[-1]
    assert split["kind"] == "split" and split["from"] == merge["into"]
    assert split["into"] == [merge["into"], "c4"]  # fresh id, never reused


# --------------------------------------------------------------------- hysteresis


def test_hysteresis_reduces_flips_near_a_boundary():
    rng = np.random.default_rng(5)
    snap = {
        "features": list(FEATURES),
        "mean": dict.fromkeys(FEATURES, 0.0),
        "std": dict.fromkeys(FEATURES, 1.0),
        "profiles": {
            "c0": {f: (-1.0 if f == "order_value" else 0.0) for f in FEATURES},
            "c1": {f: (1.0 if f == "order_value" else 0.0) for f in FEATURES},
        },
        "events": [],
    }

    def flips(hysteresis: float) -> int:
        assigner = SegmentAssigner.from_snapshot(snap, hysteresis=hysteresis)
        current, count = None, 0
        for noise in rng.normal(0.0, 0.02, size=500):
            x = dict.fromkeys(FEATURES, 0.0)
            x["order_value"] = float(noise)
            cid, _, _ = assigner.assign(x, current)
            count += current is not None and cid != current
            current = cid
        return count

    without, with_ = flips(0.0), flips(0.1)
    assert without > 50
    assert with_ <= without // 10
    # A clear move still switches.
    assigner = SegmentAssigner.from_snapshot(snap)
    far = dict.fromkeys(FEATURES, 0.0)
    far["order_value"] = 0.5
    cid, margin, _ = assigner.assign(far, "c0")
    assert cid == "c1" and margin > 0


# --------------------------------------------------------------------- persistence


def test_snapshot_json_round_trip_and_assigner_agreement(trained):
    data, xs, _, _ = trained
    learner = SegmentLearner.from_bytes(data)
    snap = learner.snapshot()
    text = json.dumps(snap, allow_nan=False)
    again = json.loads(text)
    assert again == snap
    assert set(snap) >= {
        "version",
        "model_version",
        "features",
        "mean",
        "std",
        "centroids",
        "labels",
        "profiles",
        "k",
        "samples",
        "quality",
        "events",
    }
    assert snap["model_version"] == f"km-{snap['version']}"
    assert learner.snapshot()["version"] == snap["version"] + 1
    assigner = SegmentAssigner.from_snapshot(again)
    for x in xs[:2000]:
        assert assigner.assign(x)[0] == learner.predict_one(x)
    # partially known vectors: absent dimensions count as average in both
    for x in xs[:200]:
        partial = {f: v for f, v in x.items() if f not in ("order_value", "tenure")}
        assert assigner.assign(partial)[0] == learner.predict_one(partial)


def test_to_bytes_round_trip_continues_identically():
    xs, _, _, _ = _blob_data(n=2500)
    learner = SegmentLearner(**BLOB_PARAMS)
    learner.learn_many(xs[:1200], keys=[f"cust{i % 700}" for i in range(1200)])
    clone = SegmentLearner.from_bytes(learner.to_bytes())
    learner.learn_many(xs[1200:])
    clone.learn_many(xs[1200:])
    assert json.dumps(learner.snapshot(), sort_keys=True) == json.dumps(
        clone.snapshot(), sort_keys=True
    )
    with pytest.raises(ValueError):
        SegmentLearner.from_bytes(b"\x80\x05N.")


def test_learner_resumes_from_snapshot(trained):
    data, xs, _, _ = trained
    learner = SegmentLearner.from_bytes(data)
    snap = json.loads(json.dumps(learner.snapshot()))
    resumed = SegmentLearner.from_snapshot(snap, **BLOB_PARAMS)
    assert resumed.ids == learner.ids and resumed.ready
    for x in xs[:500]:
        assert resumed.predict_one(x) == learner.predict_one(x)
    resumed.learn_many(xs[:1500])  # refills the reservoir and re-evaluates without trouble
    assert resumed.snapshot()["version"] == snap["version"] + 1
    assert set(resumed.ids) == set(learner.ids)


def test_keyed_reservoir_and_forget():
    learner = SegmentLearner(warmup=50, reservoir_size=100, seed=0)
    for i in range(30):
        learner.learn_one({"order_value": float(i), "purchase_rate": 1.0}, key="same")
    assert learner._res_n == 1 and not learner.ready
    assert learner.forget("same") and not learner.forget("same")
    assert learner._res_n == 0
    for i in range(500):
        learner.learn_one({"order_value": float(i % 7), "purchase_rate": 1.0}, key=f"k{i}")
    assert learner._res_n == 100 and len(learner._slot_of) == 100
    key = next(iter(learner._slot_of))
    assert learner.forget(key)
    assert learner._res_n == 99 and key not in learner._slot_of
    assert all(learner._res_keys[s] == k for k, s in learner._slot_of.items())


# --------------------------------------------------------------------- labels & quality

PERSONAS = {
    # purchase_rate, order_value, browse, conversion, support, escalation, sentiment,
    # dormancy, tenure  (NaN = unknown)
    "bargain_hunter": [1.6, 3.0, 3.6, 0.5, 0.2, 0.05, 0.0, 0.8, 5.5],
    "loyal_high_spender": [1.0, 5.0, 2.0, 0.7, 0.1, 0.0, 0.9, 1.5, 6.0],
    "window_shopper": [0.1, np.nan, 3.8, 0.08, 0.05, 0.0, 0.0, 1.2, np.nan],
    "support_heavy_detractor": [0.7, 4.0, 1.8, 0.5, 1.6, 0.4, -1.6, 1.5, 5.8],
    "new_customer": [0.7, 3.8, 2.2, 0.5, 0.05, 0.0, 0.0, 1.0, 2.5],
}
NOISE = [0.45, 0.55, 0.6, 0.18, 0.35, 0.12, 0.65, 0.6, 0.6]
SHARES = [0.3, 0.15, 0.25, 0.1, 0.2]


def persona_points(n: int, rng: np.random.Generator):
    means = np.array(list(PERSONAS.values()))
    labels = rng.choice(len(means), size=n, p=SHARES)
    X = means[labels] + rng.normal(size=(n, D)) * np.array(NOISE)
    X[:, 3] = np.clip(X[:, 3], 0.0, 1.0)  # conversion, escalation share are rates
    X[:, 5] = np.clip(X[:, 5], 0.0, 1.0)
    X[:, [0, 4]] = np.maximum(X[:, [0, 4]], 0.0)
    xs = [{f: float(v) for f, v in zip(FEATURES, row, strict=True) if not np.isnan(v)} for row in X]
    return xs, labels, X


def test_quality_online_vs_sklearn_batch_on_persona_like_data(capsys):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(2024)
    xs, truth, X = persona_points(8000, rng)
    learner = SegmentLearner(seed=42)  # defaults: warmup 500, k in [2, 8]
    t0 = time.perf_counter()
    learner.learn_many(xs)
    learn_s = time.perf_counter() - t0
    snap = json.loads(json.dumps(learner.snapshot()))
    assigner = SegmentAssigner.from_snapshot(snap)
    online = [assigner.assign(x)[0] for x in xs]

    mean = np.nanmean(X, 0)
    std = np.nanstd(X, 0)
    Z = np.nan_to_num((X - mean) / std, nan=0.0)
    batch = KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(Z)
    ari_online = adjusted_rand_score(truth, online)
    ari_batch = adjusted_rand_score(truth, batch)
    with capsys.disabled():
        print(
            f"\n[quality] k={learner.k} silhouette={learner.silhouette:.3f} "
            f"ARI online={ari_online:.3f} sklearn batch={ari_batch:.3f} "
            f"learn={learn_s / len(xs) * 1e6:.1f} us/sample labels={snap['labels']}"
        )
    assert learner.k == 5
    assert ari_online >= 0.9 * ari_batch
    assert ari_online > 0.8

    # Labels are derived from what distinguishes each cluster.
    persona_of = {}
    for cid in snap["centroids"]:
        members = truth[[c == cid for c in online]]
        persona_of[cid] = list(PERSONAS)[np.bincount(members, minlength=5).argmax()]
    labels = {persona_of[cid]: label for cid, label in snap["labels"].items()}
    assert len(set(snap["labels"].values())) == len(snap["labels"])
    assert "detractors" in labels["support_heavy_detractor"]
    assert "rarely buy" in labels["window_shopper"] or "abandoners" in labels["window_shopper"]
    assert "high spenders" in labels["loyal_high_spender"]
    assert "new" in labels["new_customer"].split(", ")
    assert describe_clusters(snap) == describe_clusters(json.loads(json.dumps(snap)))
    # reasons are words about the customer's distinguishing dimensions
    _, _, reasons = assigner.assign(xs[0])
    assert 1 <= len(reasons) <= 3 and all(isinstance(r, str) for r in reasons)
