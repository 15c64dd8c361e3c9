"""Issue #17's reproduction through the real broker, on whatever code is first on PYTHONPATH.

Produces the separated-persona simulation (1,500 customers x 120 days, seed 42) in
time order to one worker, then prints k, the ARI of the final clusters (as
segment-changes tells them) against the personas and batch k-means (k = 5), and the
cluster changes per customer in the last 40 days. Needs the shared broker.

    .venv/bin/python scripts/cluster_reproduction.py [separated|overlapping]

The "before" row of docs/quality.md: an export of commit fdf8910 with this
checkout's streams/simulator.py and streams/persona_modes.py copied in, run as
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
from streams.persona_modes import simulation
from streams.quality import ari, standardise
from streams.settings import Settings
from streams.topics import create_topics
from tests.integration.conftest import Stack, handled_total, wait_for

mode = sys.argv[1] if len(sys.argv) > 1 else "separated"
sim = simulation(mode, 1500, 120, 42)
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
t0 = time.time()
asyncio.run(stack.produce(events))
wait_for(lambda: handled_total([worker]) >= len(events), timeout=1800, interval=2.0)
prev = -1
while True:
    recs = asyncio.run(stack.consume("segment-changes", until=lambda rs: False, timeout=15))
    if len(recs) == prev:
        break
    prev = len(recs)
values = [r["value"] for r in recs]
catalogue = worker.get("/segments")[1]
worker.stop()
last = {}
moves = []
end_ms = sim.start_ms + 120 * MS_PER_DAY
for v in values:
    if v["segment_type"] != "cluster" or "model_change" in v:
        continue
    if v["customer_id"] not in last or v["seq"] > last[v["customer_id"]][0]:
        last[v["customer_id"]] = (v["seq"], v["current"])
    if v["previous"] is not None and v["current"] is not None:
        moves.append(parse_ts(v["ts"]))
states = {}
for topic, e in events:
    st = states.setdefault(e["customer_id"], features.new_state())
    features.apply_event(
        st, topic, dict(e, ts=e["ts"] if type(e["ts"]) is int else parse_ts(e["ts"]))
    )
ids = sorted(truth)
Z = standardise(
    [
        [cluster_vector(features.read_features(states[c], end_ms)).get(f) for f in FEATURES]
        for c in ids
    ]
)
batch = KMeans(5, n_init=10, random_state=42).fit_predict(Z)
online = [(last.get(c) or (0, None))[1] or "none" for c in ids]
persona = [truth[c] for c in ids]
last40 = sum(t >= end_ms - 40 * MS_PER_DAY for t in moves)
print(
    f"mode={mode} k={catalogue.get('clusters')} model={catalogue.get('model_version')} "
    f"ari_online={ari(online, persona):.3f} ari_batch_k5={ari(list(batch), persona):.3f} "
    f"changes_last40={last40} per_customer_last40={last40 / 1500:.3f} per_30d={last40 / 1500 * 30 / 40:.3f} "
    f"events={len(events)} wall={time.time() - t0:.0f}s"
)
