"""Quality benchmark of the online segmentation: ``python -m streams.quality``.

Replays a seeded :class:`~streams.simulator.Simulation` (known personas) through
what a worker does, in-process and without Kafka, and compares the behavioural
clusters it ends with against a batch k-means on the same customers' final
vectors and against the simulator's personas.

The online path is the worker's code, not a re-implementation:

* every event goes through :meth:`CustomerProcessor.handle` with the stream
  clock, the current :class:`~models.clustering.SegmentAssigner` and churn
  parameters of a real :class:`~streams.runtime.Runtime` (what
  :meth:`streams.pipeline.Pipeline.on_event` passes);
* ``training_vector`` samples are buffered exactly as
  :meth:`Pipeline.add_training_sample` does (key = hashed customer id) and
  handed in batches of ``batch_size`` (the 0.5 s flush) to a
  :class:`~streams.learner.LearnerHost`, which publishes a snapshot when
  ``should_publish()`` (every ``publish_every`` samples); the published message
  goes through a JSON round trip into :meth:`Runtime.install_model`, which
  builds the assigner used by every later ``handle`` and review;
* at every UTC midnight of the stream clock, every customer due for review is
  re-evaluated (:meth:`CustomerProcessor.due_for_review` / ``review``), as the
  worker's sweep does.

A customer's online segment is ``state["seg"]["cluster"]["current"]`` at the
end. The batch baseline is scikit-learn ``KMeans(n_init=10)`` on the
standardised ``cluster_vector(read_features(state, clock))`` of every customer
(absent dimensions at the mean, as the learner treats them), with the online
model's final k and with the true number of personas. Agreement with the
personas is the adjusted Rand index (ARI). See ``docs/quality.md``.

Examples
--------
>>> ari([0, 0, 1, 1], ["a", "a", "b", "b"]), round(ari([0, 1, 0, 1], ["a", "a", "b", "b"]), 3)
(1.0, -0.5)
>>> standardise([[1.0, None], [3.0, 2.0]]).tolist()
[[-1.0, 0.0], [1.0, 0.0]]
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from models.churn import ChurnScorer
from models.cluster_vector import FEATURES, cluster_vector
from models.clustering import SegmentLearner
from models.eventtime import MS_PER_DAY, parse_ts
from models.rules import RuleEngine, RulesConfig
from streams.learner import LearnerHost
from streams.metrics import Metrics
from streams.processing import (
    FLAP_WINDOW_MS,
    CustomerProcessor,
    result_features,
    training_sample,
)
from streams.runtime import Runtime
from streams.settings import Settings
from streams.simulator import Simulation

__all__ = [
    "QualityConfig",
    "QualityReport",
    "ari",
    "main",
    "render_markdown",
    "run_quality",
    "standardise",
]

DEFAULT_RESULTS = Path(".segmenter/quality-results.md")
TRACKED_TYPES = ("cluster", "lifecycle", "value")
NEW_CUSTOMER = "new_customer"
QUALITY_SALT = b"quality-run"  # learner keys of this offline run (any salt will do)


@dataclass
class QualityConfig:
    """One benchmark run.

    Parameters
    ----------
    customers, days, seed
        The :class:`Simulation` (default persona mix).
    batch_size
        Training samples per batch handed to the learner (the worker flushes its
        buffer every 0.5 s; 200 samples is a batch at ~400 events/s of traffic).
    publish_every
        Samples between published snapshots (``LearnerHost.publish_every``).
    learner
        Constructor arguments of :class:`SegmentLearner` that differ from the
        worker's defaults (empty: measure exactly what the worker runs).
    hysteresis
        :class:`SegmentAssigner` hysteresis; ``None`` keeps the worker's
        (``Runtime.install_model`` builds the assigner with its default).
    batch_n_init
        ``n_init`` of the scikit-learn baseline.
    """

    customers: int = 1000
    days: int = 90
    seed: int = 42
    batch_size: int = 200
    publish_every: int = LearnerHost.publish_every
    learner: dict[str, Any] = field(default_factory=dict)
    hysteresis: float | None = None
    batch_n_init: int = 10


@dataclass
class FlapStats:
    """Segment changes of one segment type over the run."""

    changes: int = 0  # changes from one segment to another (first entries excluded)
    entries: int = 0  # first assignments (previous = None)
    flaps: int = 0  # changes back to the previous segment within FLAP_WINDOW_MS

    def per_customer_30d(self, customer_days: float) -> float:
        return self.changes / customer_days * 30.0 if customer_days > 0 else 0.0

    @property
    def flap_share(self) -> float:
        return self.flaps / self.changes if self.changes else 0.0


@dataclass
class QualityReport:
    """Everything a run measured; :func:`render_markdown` prints it."""

    config: QualityConfig
    n_events: int
    n_customers: int
    n_training: int
    snapshots: int
    personas: list[str]
    k_online: int
    k_true: int
    silhouette: float | None
    bend: float | None
    k_events: list[dict[str, Any]]
    ari_online: float
    ari_batch_same_k: float
    ari_batch_true_k: float
    ari_online_excl_new: float
    ari_batch_same_k_excl_new: float
    ari_batch_true_k_excl_new: float
    ari_refreshed: float  # final model, fresh nearest-centroid assignment (diagnostic)
    unassigned: int
    clusters: list[dict[str, Any]]  # id, label, size, persona counts
    flaps: dict[str, FlapStats]
    customer_days: float
    seconds_online: float
    seconds_total: float
    Z: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, len(FEATURES))))
    truth: list[str] = field(repr=False, default_factory=list)
    online: list[str] = field(repr=False, default_factory=list)

    @property
    def ratio(self) -> float:
        return _ratio(self.ari_online, self.ari_batch_same_k)

    @property
    def ratio_excl_new(self) -> float:
        return _ratio(self.ari_online_excl_new, self.ari_batch_same_k_excl_new)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


# --------------------------------------------------------------------------- metrics


def ari(labels: Sequence[Any], truth: Sequence[Any]) -> float:
    """Adjusted Rand index of two labelings (any hashable labels), in numpy.

    Same value as ``sklearn.metrics.adjusted_rand_score``; 1 for identical
    partitions, about 0 for random ones.
    """
    _, a = np.unique(np.asarray([str(x) for x in labels]), return_inverse=True)
    _, b = np.unique(np.asarray([str(x) for x in truth]), return_inverse=True)
    n = len(a)
    if n < 2:
        return 1.0
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=np.int64)
    np.add.at(table, (a, b), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) // 2).sum())

    index = pairs(table)
    rows, cols = pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (n * (n - 1) / 2)
    maximum = (rows + cols) / 2
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def standardise(rows: Iterable[Sequence[float | None]]) -> np.ndarray:
    """z-scores per column over the known values; unknown values become 0 (the mean)."""
    X = np.array([[math.nan if v is None else float(v) for v in r] for r in rows], dtype=float)
    known = ~np.isnan(X)
    counts = known.sum(0)
    mean = np.divide(np.nansum(X, 0), counts, out=np.zeros(X.shape[1]), where=counts > 0)
    var = np.divide(
        np.nansum((X - mean) ** 2, 0), counts, out=np.zeros(X.shape[1]), where=counts > 0
    )
    std = np.sqrt(var)
    Z = np.where(std > 0, (X - mean) / np.where(std > 0, std, 1.0), 0.0)
    return np.nan_to_num(Z, nan=0.0)


# --------------------------------------------------------------------------- the online path


def _runtime(processor: CustomerProcessor) -> Runtime:
    """A real worker Runtime with nothing Kafka behind it."""
    return Runtime(
        settings=Settings(),
        metrics=Metrics(CollectorRegistry(), process_metrics=False),
        processor=processor,
        worker_id="quality",
    )


def _install(rt: Runtime, message: Mapping[str, Any], hysteresis: float | None) -> None:
    """What the broadcast reader does with a ``segment-models`` message."""
    decoded = orjson.loads(orjson.dumps({"snapshot": message["snapshot"]}))
    rt.install_model(decoded)
    if hysteresis is not None and rt.assigner is not None:
        from models.clustering import SegmentAssigner

        rt.assigner = SegmentAssigner.from_snapshot(decoded["snapshot"], hysteresis=hysteresis)


def run_quality(config: QualityConfig, progress: Any = None) -> QualityReport:
    """Run the benchmark described in the module docstring."""
    started = time.perf_counter()
    sim = Simulation(customers=config.customers, days=config.days, seed=config.seed)
    truth = {cid: t["persona"] for cid, t in sim.ground_truth().items()}

    processor = CustomerProcessor(rules=RuleEngine(RulesConfig()), scorer=ChurnScorer())
    rt = _runtime(processor)
    host = LearnerHost(rt, publish_every=config.publish_every, seed=42)
    if config.learner:
        host.learner = SegmentLearner(**{"seed": 42, **config.learner})
    host.ensure_learner()

    states: dict[str, dict[str, Any]] = {}
    first_ms: dict[str, int] = {}
    flaps = {t: FlapStats() for t in TRACKED_TYPES}
    buffer: list[dict[str, Any]] = []
    n_events = n_training = snapshots = 0
    current_day: int | None = None

    def record(result: Any) -> None:
        for change in result.segment_changes:
            stats = flaps.get(change["segment_type"])
            if stats is None:
                continue
            if change["previous"] is None:
                stats.entries += 1
            else:
                stats.changes += 1
                if change["segment_type"] in result.flaps:
                    stats.flaps += 1

    def publish() -> None:
        nonlocal snapshots
        _install(rt, host.snapshot_message(), config.hysteresis)
        snapshots += 1

    def flush() -> None:
        nonlocal buffer
        if buffer:
            batch, buffer = buffer, []
            host.learn(batch)
            if host.should_publish():
                publish()

    def sweep(midnight: int) -> None:
        for cid, state in states.items():
            if processor.due_for_review(state, midnight // MS_PER_DAY):
                record(
                    processor.review(
                        cid, state, midnight // MS_PER_DAY, rt.assigner, rt.churn_params
                    )
                )

    for topic, event in sim.events():
        ts = event["ts"] if type(event["ts"]) is int else parse_ts(event["ts"])
        if type(event["ts"]) is not int:
            event = dict(event, ts=ts)
        day = ts // MS_PER_DAY
        if current_day is not None and day > current_day:
            for d in range(current_day + 1, day + 1):
                sweep(d * MS_PER_DAY)
        current_day = day
        cid = event["customer_id"]
        result = processor.handle(cid, states.get(cid), topic, event, rt.assigner, rt.churn_params)
        if result.status != "new" or result.state is None:
            continue
        n_events += 1
        rt.observe_partition_clock(0, ts)
        states[cid] = result.state
        first_ms.setdefault(cid, ts)
        record(result)
        if result.training_vector is not None:
            n_training += 1
            buffer.append(training_sample(cid, result, QUALITY_SALT))
            if len(buffer) >= config.batch_size:
                flush()
        if progress is not None and n_events % 200_000 == 0:
            progress(n_events)
    flush()
    if host.pending:  # the worker's 10 s timer publishes what is pending
        publish()
    seconds_online = time.perf_counter() - started

    clock = rt.clock.now_ms
    ids = sorted(states)
    persona = [truth[c] for c in ids]
    online = [states[c]["seg"].get("cluster", {}).get("current") or "none" for c in ids]
    vectors = [cluster_vector(result_features(states[c], clock)) for c in ids]
    Z = standardise([[v.get(f) for f in FEATURES] for v in vectors])

    learner = host.ensure_learner()
    k_online = learner.k
    personas = sorted(set(truth.values()))
    k_true = len(personas)
    batch_same = _kmeans(Z, k_online, config) if k_online >= 2 else [0] * len(ids)
    batch_true = _kmeans(Z, k_true, config)
    refreshed = (
        [rt.assigner.assign(v)[0] or "none" for v in vectors]
        if rt.assigner
        else ["none"] * len(ids)
    )

    keep = [i for i, p in enumerate(persona) if p != NEW_CUSTOMER]

    def sub(xs: Sequence[Any]) -> list[Any]:
        return [xs[i] for i in keep]

    labels = rt.assigner.labels if rt.assigner is not None else {}
    composition: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for seg, p in zip(online, persona, strict=True):
        composition[seg][p] += 1
    clusters = [
        {
            "id": seg,
            "label": labels.get(seg, "(retired id)" if seg != "none" else "(no cluster)"),
            "size": sum(counts.values()),
            "personas": dict(counts),
        }
        for seg, counts in sorted(composition.items(), key=lambda kv: -sum(kv[1].values()))
    ]
    bends = learner.bends(learner.inertia) if learner.inertia else {}
    customer_days = sum((clock - first_ms[c]) / MS_PER_DAY for c in ids)
    return QualityReport(
        config=config,
        n_events=n_events,
        n_customers=len(ids),
        n_training=n_training,
        snapshots=snapshots,
        personas=personas,
        k_online=k_online,
        k_true=k_true,
        silhouette=learner.silhouette,
        bend=bends.get(k_online),
        k_events=[
            {k: e.get(k) for k in ("kind", "k", "from", "into", "samples") if k in e}
            for e in learner.events
        ],
        ari_online=ari(online, persona),
        ari_batch_same_k=ari(batch_same, persona),
        ari_batch_true_k=ari(batch_true, persona),
        ari_online_excl_new=ari(sub(online), sub(persona)),
        ari_batch_same_k_excl_new=ari(sub(batch_same), sub(persona)),
        ari_batch_true_k_excl_new=ari(sub(batch_true), sub(persona)),
        ari_refreshed=ari(refreshed, persona),
        unassigned=sum(1 for s in online if s == "none"),
        clusters=clusters,
        flaps=flaps,
        customer_days=customer_days,
        seconds_online=seconds_online,
        seconds_total=time.perf_counter() - started,
        Z=Z,
        truth=persona,
        online=online,
    )


def _kmeans(Z: np.ndarray, k: int, config: QualityConfig) -> list[int]:
    try:
        from sklearn.cluster import KMeans
    except ImportError as exc:  # pragma: no cover - dev dependency
        raise SystemExit("the batch baseline needs scikit-learn: pip install -e '.[dev]'") from exc
    model = KMeans(n_clusters=k, n_init=config.batch_n_init, random_state=config.seed)
    return [int(x) for x in model.fit_predict(Z)]


# --------------------------------------------------------------------------- report


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def render_markdown(report: QualityReport, command: str = "") -> str:
    """The results as a markdown document."""
    r = report
    c = r.config
    lines = [
        "# Segmentation quality: online vs batch",
        "",
    ]
    if command:
        lines += [f"`{command}`", ""]
    lines += [
        f"Simulation: {c.customers} customers, {c.days} days, seed {c.seed}; "
        f"{r.n_events:,} events, {r.n_customers} customers seen, {r.n_training:,} training "
        f"samples, {r.snapshots} snapshots (batch {c.batch_size}, publish every "
        f"{c.publish_every}"
        + (f", learner overrides {c.learner}" if c.learner else "")
        + (f", hysteresis {c.hysteresis}" if c.hysteresis is not None else "")
        + f"). Runtime {r.seconds_total:.0f} s (online replay {r.seconds_online:.0f} s).",
        "",
        "| adjusted Rand index vs personas | all customers | excluding new_customer |",
        "|---|---|---|",
        f"| online (worker path, final state) | {_f(r.ari_online)} | {_f(r.ari_online_excl_new)} |",
        f"| batch k-means, same k = {r.k_online} | {_f(r.ari_batch_same_k)} | "
        f"{_f(r.ari_batch_same_k_excl_new)} |",
        f"| batch k-means, true k = {r.k_true} | {_f(r.ari_batch_true_k)} | "
        f"{_f(r.ari_batch_true_k_excl_new)} |",
        f"| **ratio online / batch (same k)** | **{_f(r.ratio, 2)}** | "
        f"**{_f(r.ratio_excl_new, 2)}** |",
        f"| diagnostic: final model, fresh nearest-centroid assignment | {_f(r.ari_refreshed)} | |",
        "",
        f"Goal: online >= 0.9 x batch (same k): "
        f"{'met' if r.ratio >= 0.9 else 'NOT met'} ({_f(r.ratio, 2)}).",
        "",
        f"Chosen k = {r.k_online} (true personas: {r.k_true}); elbow bend at k = "
        f"{_f(r.bend)}, silhouette of the partition = {_f(r.silhouette)}. "
        f"Customers without a cluster at the end: {r.unassigned}.",
        "",
        "Model events: "
        + (
            "; ".join(
                ", ".join(f"{k}={v}" for k, v in e.items() if v is not None) for e in r.k_events
            )
            or "none"
        ),
        "",
        "## Online clusters and their personas",
        "",
        "| cluster | label | size | " + " | ".join(r.personas) + " |",
        "|---|---|---|" + "---|" * len(r.personas),
    ]
    for cl in r.clusters:
        lines.append(
            f"| {cl['id']} | {cl['label']} | {cl['size']} | "
            + " | ".join(str(cl["personas"].get(p, 0)) for p in r.personas)
            + " |"
        )
    lines += [
        "",
        f"## Segment changes (flap window {FLAP_WINDOW_MS // MS_PER_DAY} days)",
        "",
        f"Exposure: {r.customer_days:,.0f} customer-days (each customer from their first "
        "event to the end). First assignments (previous = none) are not changes.",
        "",
        "| segment type | first assignments | changes | changes / customer / 30 d | "
        "flaps | flap share |",
        "|---|---|---|---|---|---|",
    ]
    for t, s in r.flaps.items():
        lines.append(
            f"| {t} | {s.entries} | {s.changes} | {_f(s.per_customer_30d(r.customer_days))} | "
            f"{s.flaps} | {_f(s.flap_share)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.quality``: run, print the markdown table and write it."""
    parser = argparse.ArgumentParser(prog="python -m streams.quality", description=__doc__)
    default = QualityConfig()
    parser.add_argument("--customers", type=int, default=default.customers)
    parser.add_argument("--days", type=int, default=default.days)
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument("--publish-every", type=int, default=default.publish_every)
    parser.add_argument(
        "--learner",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="SegmentLearner argument to override (experiments), e.g. reevaluate_every=2000",
    )
    parser.add_argument("--hysteresis", type=float, default=None)
    parser.add_argument("--output", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in args.learner:
        name, _, value = item.partition("=")
        overrides[name] = float(value) if "." in value else int(value)
    config = QualityConfig(
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        batch_size=args.batch_size,
        publish_every=args.publish_every,
        learner=overrides,
        hysteresis=args.hysteresis,
    )
    report = run_quality(
        config, progress=lambda n: print(f"  {n:,} events", file=sys.stderr, flush=True)
    )
    command = "python -m streams.quality " + " ".join(sys.argv[1:] if argv is None else list(argv))
    text = render_markdown(report, command.strip())
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"written to {args.output}", file=sys.stderr)
    return 0 if report.ratio >= 0.9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
