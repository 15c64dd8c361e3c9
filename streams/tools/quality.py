"""Quality benchmark of the behavioural clusters: ``python -m streams.tools.quality``.

Replays a seeded simulation whose personas are known (``--mode separated``,
``overlapping`` or ``default``, :mod:`streams.tools.persona_modes`) through what a
worker does, in-process and without Kafka, and measures in the same run:

* whether the model **chose k correctly** (the number of personas, for
  separated personas; for overlapping ones, a k whose batch partition matches
  the personas at least as well as the true k's);
* the adjusted Rand index (ARI) of the clusters customers end in against the
  personas, next to batch k-means (scikit-learn) on the same customers' final
  vectors with the true k and with the model's k; goal: **online >= 0.9 x
  batch with the true k**;
* the **steady-state change rate**: cluster changes per customer per 30 days
  of stream time over the last ``steady_days`` of the run (goal < 0.1), plus
  changes, flaps and first assignments of every tracked segment type;
* the model timeline: versions, the stream time each is as of, init, split,
  merge and relabel events.

The online path is the worker's code, not a re-implementation:

* every event goes through :meth:`CustomerProcessor.handle` with the stream
  clock, the current :class:`~models.clustering.SegmentAssigner` and churn
  parameters of a real :class:`~streams.worker.runtime.Runtime`;
* learner samples (:func:`~models.processing.training_samples`, the event's
  and the catch-up refreshes of silent customers) go in batches of
  ``batch_size`` to a :class:`~streams.worker.learner.LearnerHost`;
* at every UTC midnight the stream clock passes, every customer due for review
  is re-evaluated (the worker's sweep), then the learner is told that every
  partition is complete through midnight (what the workers' ``through`` marks
  say once the sweep of the day is done) and publishes when its model changed;
  the published message goes through a JSON round trip into
  :meth:`Runtime.install_model`, which builds the assigner of every later
  ``handle`` and review.

See ``docs/quality.md``. ``tests/streams/tools/test_quality.py`` asserts the goals;
``tests/integration/test_cluster_quality.py`` measures the same through the
real broker and a worker process.

Examples
--------
>>> ari([0, 0, 1, 1], ["a", "a", "b", "b"]), round(ari([0, 1, 0, 1], ["a", "a", "b", "b"]), 3)
(1.0, -0.5)
>>> standardise([[1.0, None], [3.0, 2.0]]).tolist()
[[-1.0, 0.0], [1.0, 0.0]]
>>> steady_change_rate([(100, "c1"), (400, "c2")], customers=10, start_ms=200, days=30)
0.1
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
from models.customer import CustomerState
from models.eventtime import MS_PER_DAY, parse_ts
from models.k_selection import adjusted_rand_index
from models.processing import (
    CustomerProcessor,
    result_features,
    training_samples,
)
from models.rules import FLAP_WINDOW_MS, RuleEngine, RulesConfig
from streams.settings import Settings
from streams.tools.persona_modes import MODES, simulation
from streams.worker.learner import LearnerHost
from streams.worker.metrics import Metrics
from streams.worker.runtime import Runtime

__all__ = [
    "QualityConfig",
    "QualityReport",
    "ari",
    "main",
    "render_markdown",
    "run_quality",
    "standardise",
    "steady_change_rate",
]

DEFAULT_RESULTS = Path(".segmenter/quality-results.md")
TRACKED_TYPES = ("cluster", "lifecycle", "value")
NEW_CUSTOMER = "new_customer"
QUALITY_SALT = b"quality-run"  # learner keys of this offline run (any salt will do)
STEADY_GOAL = 0.1  # cluster changes per customer per 30 days
RATIO_GOAL = 0.9  # online ARI / batch ARI with the true k


@dataclass
class QualityConfig:
    """One benchmark run.

    Parameters
    ----------
    mode, customers, days, seed
        The simulation (:func:`streams.tools.persona_modes.simulation`); the
        defaults are the issue's reproduction: 1,500 customers of five
        separated personas over 120 days.
    batch_size
        Learner samples per batch handed to the learner (the worker flushes
        its buffer every 0.5 s).
    steady_days
        The last days of the run over which the steady-state change rate is
        measured (the personas' behaviour is steady there; the lapsers of the
        separated mode are silent by then).
    learner
        :class:`SegmentLearner` arguments that differ from the worker's
        (empty: measure exactly what the worker runs).
    hysteresis
        :class:`SegmentAssigner` hysteresis; ``None`` keeps the worker's.
    batch_n_init
        ``n_init`` of the scikit-learn baseline.
    """

    mode: str = "separated"
    customers: int = 1500
    days: int = 120
    seed: int = 42
    batch_size: int = 200
    steady_days: int = 40
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
    stabilities: dict[int, float]
    silhouettes: dict[int, float]
    model_events: list[dict[str, Any]]
    timeline: list[tuple[int, int | None, int]]  # (version, as_of_ms, k) per publication
    ari_online: float
    ari_batch_same_k: float
    ari_batch_true_k: float
    ari_refreshed: float  # final model, fresh nearest-centroid assignment (diagnostic)
    ari_online_excl_new: float | None
    ari_batch_true_k_excl_new: float | None
    unassigned: int
    clusters: list[dict[str, Any]]  # id, label, size, persona counts
    flaps: dict[str, FlapStats]
    customer_days: float
    steady_changes: int
    steady_rate: float  # cluster changes per customer per 30 days, last steady_days
    steady_by_persona: dict[str, float]
    seconds_online: float
    seconds_total: float
    final_snapshot: dict[str, Any] = field(repr=False, default_factory=dict)
    Z: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, len(FEATURES))))
    truth: list[str] = field(repr=False, default_factory=list)
    online: list[str] = field(repr=False, default_factory=list)

    @property
    def ratio(self) -> float:
        """Online ARI over batch k-means with the same k."""
        return _ratio(self.ari_online, self.ari_batch_same_k)

    @property
    def ratio_true_k(self) -> float:
        """Online ARI over batch k-means with the true k (goal >= 0.9)."""
        return _ratio(self.ari_online, self.ari_batch_true_k)

    @property
    def k_correct(self) -> bool:
        """The true k, or (overlapping personas) a k that explains them as well."""
        if self.k_online == self.k_true:
            return True
        return self.config.mode == "overlapping" and self.ari_batch_same_k >= self.ari_batch_true_k

    @property
    def goals_met(self) -> bool:
        return (
            self.ratio_true_k >= RATIO_GOAL
            and self.steady_rate < STEADY_GOAL
            and (self.k_correct or self.config.mode == "default")
        )


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


# --------------------------------------------------------------------------- metrics


def ari(labels: Sequence[Any], truth: Sequence[Any]) -> float:
    """Adjusted Rand index of two labelings with any labels (``None`` included).

    Same value as ``sklearn.metrics.adjusted_rand_score``; 1 for identical
    partitions, about 0 for random ones. The labels are compared as text and
    scored by :func:`models.k_selection.adjusted_rand_index`.
    """
    return adjusted_rand_index(
        np.asarray([str(x) for x in labels]), np.asarray([str(x) for x in truth])
    )


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


def steady_change_rate(
    changes: Iterable[tuple[int, str]], customers: int, start_ms: int, days: float
) -> float:
    """Cluster changes at or after ``start_ms`` per customer, per 30 days of ``days``."""
    n = sum(1 for ts, _ in changes if ts >= start_ms)
    return n / customers * 30.0 / days if customers and days > 0 else 0.0


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
    sim = simulation(config.mode, config.customers, config.days, config.seed)
    truth = {cid: t["persona"] for cid, t in sim.ground_truth().items()}
    run = _OnlineRun(config)
    run.replay(sim.events(), progress)
    seconds_online = time.perf_counter() - started
    return _compare(run, truth, started, seconds_online)


class _OnlineRun:
    """The simulation's events through the worker's code, as the worker runs it.

    Every event is handled by the :class:`CustomerProcessor`, the learner
    samples go to the :class:`LearnerHost` in batches, and at every midnight
    the sweep reviews every customer before the learner may close the day;
    the models it publishes are installed as the broadcast reader would.
    Segment changes are counted on the way (:class:`FlapStats`).
    """

    def __init__(self, config: QualityConfig) -> None:
        self.config = config
        self.processor = CustomerProcessor(rules=RuleEngine(RulesConfig()), scorer=ChurnScorer())
        self.rt = _runtime(self.processor)
        self.host = LearnerHost(self.rt, seed=42)
        if config.learner:
            self.host.learner = SegmentLearner(**{**self.host.learner_params(), **config.learner})
        self.host.ensure_learner()
        self.partitions = range(self.rt.settings.partitions)
        self.states: dict[str, CustomerState] = {}
        self.first_ms: dict[str, int] = {}
        self.flaps = {t: FlapStats() for t in TRACKED_TYPES}
        self.cluster_moves: list[tuple[int, str]] = []  # (ts, customer) of every cluster change
        self.buffer: list[dict[str, Any]] = []
        self.timeline: list[tuple[int, int | None, int]] = []
        self.published: dict[str, Any] = {}
        self.n_events = 0
        self.n_training = 0

    def replay(self, events: Iterable[tuple[str, dict[str, Any]]], progress: Any = None) -> None:
        """Handle the events in order, passing every midnight between them."""
        current_day: int | None = None
        for topic, event in events:
            ts = event["ts"] if type(event["ts"]) is int else parse_ts(event["ts"])
            if type(event["ts"]) is not int:
                event = dict(event, ts=ts)
            day = ts // MS_PER_DAY
            if current_day is not None and day > current_day:
                for d in range(current_day + 1, day + 1):
                    self.midnight(d)
            current_day = day
            handled = self.handle(topic, event, ts)
            if handled and progress is not None and self.n_events % 50_000 == 0:
                progress(self.n_events)
        self.flush()

    def handle(self, topic: str, event: dict[str, Any], ts: int) -> bool:
        """The worker's handling of one event; False when it was not new."""
        cid = event["customer_id"]
        rt = self.rt
        result = self.processor.handle(
            cid, self.states.get(cid), topic, event, rt.assigner, rt.churn_params
        )
        if result.status != "new" or result.state is None:
            return False
        self.n_events += 1
        rt.observe_partition_clock(0, ts)
        self.states[cid] = result.state
        self.first_ms.setdefault(cid, ts)
        self.record(cid, result)
        if len(self.buffer) >= self.config.batch_size:
            self.flush()
        return True

    def record(self, cid: str, result: Any) -> None:
        """Count a result's segment changes and buffer its learner samples."""
        for change in result.segment_changes:
            self._count_change(cid, change, result.flaps)
        samples = training_samples(cid, result, QUALITY_SALT)
        self.n_training += len(samples)
        self.buffer.extend(samples)

    def _count_change(self, cid: str, change: Mapping[str, Any], flapped: Any) -> None:
        stats = self.flaps.get(change["segment_type"])
        if stats is None:
            return
        if change["previous"] is None:
            stats.entries += 1
        elif change["current"] is not None:
            stats.changes += 1
            if change["segment_type"] == "cluster":
                self.cluster_moves.append((parse_ts(change["ts"]), cid))
            if change["segment_type"] in flapped:
                stats.flaps += 1

    def flush(self, through: int | None = None) -> None:
        """Hand the buffered samples to the learner (complete ``through`` a midnight)."""
        batch, self.buffer = self.buffer, []
        marks = {str(p): through for p in self.partitions} if through is not None else None
        self.host.learn(batch, through=marks)

    def midnight(self, day: int) -> None:
        """The sweep, then the learner may close the day and publish a model."""
        # The sweep brings every customer to the new day; then every partition
        # is complete through midnight and the learner may close the day.
        rt = self.rt
        processor = self.processor
        for cid, state in self.states.items():
            if processor.due_for_review(state, day, rt.assigner_signature()):
                self.record(cid, processor.review(cid, state, day, rt.assigner, rt.churn_params))
        self.flush(through=day * MS_PER_DAY)
        if self.host.advance():
            message = self.host.snapshot_message()
            _install(rt, message, self.config.hysteresis)
            snap = message["snapshot"]
            self.timeline.append((snap["version"], snap.get("as_of_ms"), snap["k"]))
            self.published["snapshot"] = orjson.loads(orjson.dumps(snap))


# --------------------------------------------------------------------------- the comparison


def _compare(
    run: _OnlineRun, truth: Mapping[str, str], started: float, seconds_online: float
) -> QualityReport:
    """Compare the online segments at the end of the run with the personas and batch k-means."""
    config = run.config
    rt = run.rt
    states = run.states
    clock = rt.clock.now_ms
    ids = sorted(states)
    persona = [truth[c] for c in ids]
    online = [states[c]["seg"].get("cluster", {}).get("current") or "none" for c in ids]
    vectors = [cluster_vector(result_features(states[c], clock)) for c in ids]
    Z = standardise([[v.get(f) for f in FEATURES] for v in vectors])

    learner = run.host.ensure_learner()
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
    # The same figures without the new customers (whose persona is their age).
    keep = [i for i, p in enumerate(persona) if p != NEW_CUSTOMER]
    has_new = len(keep) < len(ids)

    def sub(xs: Sequence[Any]) -> list[Any]:
        return [xs[i] for i in keep]

    labels = rt.assigner.labels if rt.assigner is not None else {}
    steady_start = clock - config.steady_days * MS_PER_DAY
    cluster_moves = run.cluster_moves
    customer_days = sum((clock - run.first_ms[c]) / MS_PER_DAY for c in ids)
    return QualityReport(
        config=config,
        n_events=run.n_events,
        n_customers=len(ids),
        n_training=run.n_training,
        snapshots=len(run.timeline),
        personas=personas,
        k_online=k_online,
        k_true=k_true,
        silhouette=learner.silhouette,
        stabilities=dict(learner.stabilities),
        silhouettes=dict(learner.silhouettes),
        model_events=[dict(e) for e in learner.events],
        timeline=run.timeline,
        ari_online=ari(online, persona),
        ari_batch_same_k=ari(batch_same, persona),
        ari_batch_true_k=ari(batch_true, persona),
        ari_refreshed=ari(refreshed, persona),
        ari_online_excl_new=ari(sub(online), sub(persona)) if has_new else None,
        ari_batch_true_k_excl_new=ari(sub(batch_true), sub(persona)) if has_new else None,
        unassigned=sum(1 for s in online if s == "none"),
        clusters=_cluster_table(online, persona, labels),
        flaps=run.flaps,
        customer_days=customer_days,
        steady_changes=sum(1 for ts, _ in cluster_moves if ts >= steady_start),
        steady_rate=steady_change_rate(cluster_moves, len(ids), steady_start, config.steady_days),
        steady_by_persona=_steady_by_persona(
            cluster_moves, truth, persona, personas, steady_start, config.steady_days
        ),
        seconds_online=seconds_online,
        seconds_total=time.perf_counter() - started,
        final_snapshot=run.published.get("snapshot", {}),
        Z=Z,
        truth=persona,
        online=online,
    )


def _cluster_table(
    online: Sequence[str], persona: Sequence[str], labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Every online cluster's id, label, size and persona counts, largest first."""
    composition: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for seg, p in zip(online, persona, strict=True):
        composition[seg][p] += 1
    return [
        {
            "id": seg,
            "label": labels.get(seg, "(retired id)" if seg != "none" else "(no cluster)"),
            "size": sum(counts.values()),
            "personas": dict(counts),
        }
        for seg, counts in sorted(composition.items(), key=lambda kv: -sum(kv[1].values()))
    ]


def _steady_by_persona(
    cluster_moves: Sequence[tuple[int, str]],
    truth: Mapping[str, str],
    persona: Sequence[str],
    personas: Sequence[str],
    steady_start: int,
    steady_days: int,
) -> dict[str, float]:
    """The steady-state change rate of each persona's customers."""
    by_persona = collections.Counter(persona)
    return {
        p: steady_change_rate(
            [(ts, c) for ts, c in cluster_moves if truth[c] == p],
            by_persona[p],
            steady_start,
            steady_days,
        )
        for p in personas
    }


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


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def render_markdown(report: QualityReport, command: str = "") -> str:
    """The results as a markdown document."""
    r = report
    c = r.config
    lines = ["# Segmentation quality: online vs batch", ""]
    if command:
        lines += [f"`{command}`", ""]
    kinds = collections.Counter(e.get("kind") for e in r.model_events)
    lines += [
        f"Simulation: mode {c.mode}, {c.customers} customers, {c.days} days, seed {c.seed}; "
        f"{r.n_events:,} events, {r.n_customers} customers seen, {r.n_training:,} learner "
        f"samples, {r.snapshots} published models (batch {c.batch_size}"
        + (f", learner overrides {c.learner}" if c.learner else "")
        + (f", hysteresis {c.hysteresis}" if c.hysteresis is not None else "")
        + f"). Runtime {r.seconds_total:.0f} s (online replay {r.seconds_online:.0f} s).",
        "",
        "| adjusted Rand index vs personas | all customers |"
        + (" excluding new_customer |" if r.ari_online_excl_new is not None else ""),
        "|---|---|" + ("---|" if r.ari_online_excl_new is not None else ""),
        f"| online (worker path, final state) | {_f(r.ari_online)} |"
        + (f" {_f(r.ari_online_excl_new)} |" if r.ari_online_excl_new is not None else ""),
        f"| batch k-means, true k = {r.k_true} | {_f(r.ari_batch_true_k)} |"
        + (f" {_f(r.ari_batch_true_k_excl_new)} |" if r.ari_online_excl_new is not None else ""),
        f"| batch k-means, the model's k = {r.k_online} | {_f(r.ari_batch_same_k)} |"
        + (" |" if r.ari_online_excl_new is not None else ""),
        f"| **ratio online / batch (true k)** | **{_f(r.ratio_true_k, 2)}** |"
        + (" |" if r.ari_online_excl_new is not None else ""),
        f"| diagnostic: final model, fresh nearest-centroid assignment | {_f(r.ari_refreshed)} |"
        + (" |" if r.ari_online_excl_new is not None else ""),
        "",
        f"Goals: online >= {RATIO_GOAL} x batch (true k): {_met(r.ratio_true_k >= RATIO_GOAL)} "
        f"({_f(r.ratio_true_k, 2)}); k chosen correctly: {_met(r.k_correct)} "
        f"(k = {r.k_online}, personas: {r.k_true}); steady-state cluster changes < "
        f"{STEADY_GOAL} per customer per 30 days: {_met(r.steady_rate < STEADY_GOAL)} "
        f"({_f(r.steady_rate)}: {r.steady_changes} changes in the last {c.steady_days} days).",
        "",
        "Choice of k at the last evaluation (silhouette among the reproducible k; "
        "stability = ARI between fits of resamples): "
        + ", ".join(
            f"k={k}: silhouette {_f(r.silhouettes.get(k))}, stability {_f(s)}"
            for k, s in sorted(r.stabilities.items())
        )
        + f". Customers without a cluster at the end: {r.unassigned}.",
        "",
        f"Model timeline: {r.snapshots} versions, one per day of stream time at most "
        f"(first as of {_day(r.timeline[0][1]) if r.timeline else 'n/a'}); events: "
        + (", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none")
        + "; structural: "
        + (
            "; ".join(
                ", ".join(f"{k}={v}" for k, v in e.items() if k in ("kind", "from", "into", "k"))
                + f" (as of {_day(e.get('as_of_ms'))})"
                for e in r.model_events
                if e.get("kind") in ("init", "split", "merge")
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
    lines += [
        "",
        f"Steady state (last {c.steady_days} days), cluster changes per customer per 30 days "
        "by persona: "
        + ", ".join(f"{p} {_f(v)}" for p, v in sorted(r.steady_by_persona.items()))
        + ".",
    ]
    return "\n".join(lines) + "\n"


def _day(ms: int | None) -> str:
    if ms is None:
        return "n/a"
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.tools.quality``: run, print the markdown report and write it."""
    parser = argparse.ArgumentParser(prog="python -m streams.tools.quality", description=__doc__)
    default = QualityConfig()
    parser.add_argument("--mode", choices=MODES, default=default.mode)
    parser.add_argument("--customers", type=int, default=default.customers)
    parser.add_argument("--days", type=int, default=default.days)
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument("--steady-days", type=int, default=default.steady_days)
    parser.add_argument(
        "--learner",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="SegmentLearner argument to override (experiments), e.g. reevaluate_days=14",
    )
    parser.add_argument("--hysteresis", type=float, default=None)
    parser.add_argument("--output", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in args.learner:
        name, _, value = item.partition("=")
        overrides[name] = float(value) if "." in value else int(value)
    config = QualityConfig(
        mode=args.mode,
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        batch_size=args.batch_size,
        steady_days=args.steady_days,
        learner=overrides,
        hysteresis=args.hysteresis,
    )
    report = run_quality(
        config, progress=lambda n: print(f"  {n:,} events", file=sys.stderr, flush=True)
    )
    given = sys.argv[1:] if argv is None else list(argv)
    command = "python -m streams.tools.quality " + " ".join(given)
    text = render_markdown(report, command.strip())
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"written to {args.output}", file=sys.stderr)
    return 0 if report.goals_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
