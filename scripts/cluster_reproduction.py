"""Issue #17's reproduction through the real broker, on whatever code is first on PYTHONPATH.

Produces the separated-persona simulation (1,500 customers x 120 days, seed 42) in
time order to one worker, then prints k, the ARI of the final clusters (as
segment-changes tells them) against the personas and batch k-means (k = 5), and the
cluster changes per customer in the last 40 days. Needs the shared broker.

    PYTHONPATH=. .venv/bin/python scripts/cluster_reproduction.py [separated|overlapping]

The "before" row of docs/quality.md: an export of commit fdf8910 with this
checkout's streams/tools/simulator.py and streams/tools/persona_modes.py copied in, run as
``PYTHONPATH=<export> .venv/bin/python <export>/scripts/cluster_reproduction.py``
(the worker subprocess inherits PYTHONPATH, so it runs the old code too).
"""

import asyncio
import sys
import time
import uuid
from pathlib import Path

from sklearn.cluster import KMeans

from models import features
from models.cluster_vector import FEATURES, cluster_vector
from models.eventtime import MS_PER_DAY, parse_ts
from streams.settings import Settings
from streams.tools.persona_modes import simulation
from streams.tools.quality import ari, standardise
from streams.topics import create_topics
from tests.integration.conftest import Stack, handled_total, wait_for

MODE = sys.argv[1] if len(sys.argv) > 1 else "separated"
CUSTOMERS, DAYS, SEED, STEADY_DAYS = 1500, 120, 42, 40


def main() -> None:
    sim = simulation(MODE, CUSTOMERS, DAYS, SEED)
    events = list(sim.events())
    truth = {c: t["persona"] for c, t in sim.ground_truth().items()}
    tag = uuid.uuid4().hex[:8]
    stack = Stack(
        bootstrap=Settings().kafka_bootstrap,
        root=Path(f".segmenter/reproduction-{tag}"),
        prefix=f"t{tag}-",
        app_id=f"segmenter-{tag}",
    )
    asyncio.run(create_topics(stack.settings))
    worker = stack.worker("w1")
    started = time.time()
    try:
        asyncio.run(stack.produce(events))
        wait_for(lambda: handled_total([worker]) >= len(events), timeout=1800, interval=2.0)
        seen = -1
        while True:  # until no more segment changes arrive
            records = asyncio.run(stack.consume("segment-changes", lambda rs: False, timeout=15))
            if len(records) == seen:
                break
            seen = len(records)
        catalogue = worker.get("/segments")[1]
    finally:
        worker.stop()
    end_ms = sim.start_ms + DAYS * MS_PER_DAY
    last: dict[str, tuple[int, str | None]] = {}
    moves = []
    for value in (r["value"] for r in records):
        if value["segment_type"] != "cluster" or "model_change" in value:
            continue
        customer = value["customer_id"]
        if customer not in last or value["seq"] > last[customer][0]:
            last[customer] = (value["seq"], value["current"])
        if value["previous"] is not None and value["current"] is not None:
            moves.append(parse_ts(value["ts"]))
    states: dict[str, dict] = {}
    for topic, event in events:
        ts = event["ts"] if type(event["ts"]) is int else parse_ts(event["ts"])
        state = states.setdefault(event["customer_id"], features.new_state())
        features.apply_event(state, topic, dict(event, ts=ts))
    ids = sorted(truth)
    vectors = [cluster_vector(features.read_features(states[c], end_ms)) for c in ids]
    Z = standardise([[v.get(f) for f in FEATURES] for v in vectors])
    batch = KMeans(5, n_init=10, random_state=SEED).fit_predict(Z)
    online = [(last.get(c) or (0, None))[1] or "none" for c in ids]
    persona = [truth[c] for c in ids]
    steady = sum(t >= end_ms - STEADY_DAYS * MS_PER_DAY for t in moves) / CUSTOMERS
    print(
        f"mode={MODE} k={catalogue.get('clusters')} model={catalogue.get('model_version')} "
        f"ari_online={ari(online, persona):.3f} ari_batch_k5={ari(list(batch), persona):.3f} "
        f"changes_per_customer_last{STEADY_DAYS}d={steady:.3f} "
        f"per_30d={steady * 30 / STEADY_DAYS:.3f} events={len(events)} "
        f"wall={time.time() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
