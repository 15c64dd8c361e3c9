"""HTTP views of the worker: customers, segment catalogue, metrics, health."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from models.customer import is_opted_out
from models.eventtime import format_ts
from streams.codec import decode_state
from streams.worker.metrics import exposition
from streams.worker.runtime import Runtime
from streams.worker.segment_api import catalogue_kpis, churn_catalogue, register_segment_views

__all__ = ["register_views", "segment_catalogue"]

JSON = "application/json"


def register_views(app: Any, rt: Runtime, customers: Any, route_topic: Any) -> None:
    """Add the contract's HTTP endpoints to the Faust app's web server.

    ``GET /customers/{id}`` is routed by the partition of an input topic
    (co-partitioned with the table): Faust's table routing would hash the
    table's JSON-encoded key, not the raw key producers use, and could send the
    request to a worker that does not hold the customer.
    """

    def read_customer(customer_id: str) -> bytes | None:
        # What the worker has handled, committed or not: the events counted as
        # processed are in it (a batch's states are written to the store at its
        # group commit, after the count).
        pipeline = app.pipeline  # (create_app sets it before the views)
        return pipeline.customers.get(customer_id, pipeline.router.partition_of(customer_id))

    def json_response(web: Any, value: Any, status: int = 200) -> Any:
        return web.bytes(orjson.dumps(value), content_type=JSON, status=status)

    @app.page("/customers/{customer_id}")
    @app.topic_route(topic=route_topic, match_info="customer_id")
    async def get_customer(web: Any, request: Any, customer_id: str) -> Any:
        state = decode_state(read_customer(customer_id))
        if state is None or is_opted_out(state):
            return json_response(
                web, {"error": "unknown customer", "customer_id": customer_id}, 404
            )
        view = rt.processor.view(customer_id, state, rt.clock.now_ms, rt.churn_params)
        # Records written before the allow-list narrowed may hold more.
        features = view["features"]
        features["profile"] = rt.profile_policy.visible(features.get("profile") or {})
        return json_response(web, view)

    @app.page("/segments")
    async def get_segments(web: Any, request: Any) -> Any:
        return json_response(web, segment_catalogue(rt))

    register_segment_views(app, rt, customers, route_topic)  # members, experiments

    @app.page("/metrics")
    async def get_metrics(web: Any, request: Any) -> Any:
        body, content_type = exposition(rt.metrics.registry, request.headers.get("Accept"))
        # aiohttp refuses a charset inside content_type=, so send the header as is.
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.page("/health")
    async def get_health(web: Any, request: Any) -> Any:
        return json_response(web, {"status": "ok", "worker": rt.worker_id})

    @app.page("/ready")
    async def get_ready(web: Any, request: Any) -> Any:
        checks = readiness(app, rt)
        ready = all(checks.values())
        rt.metrics.set_ready(ready)
        return json_response(web, {"ready": ready, "checks": checks}, 200 if ready else 503)


def readiness(app: Any, rt: Runtime) -> dict[str, bool]:
    """What an orchestrator needs before sending traffic to this worker."""
    try:
        assigned = bool(app.consumer.assignment())
    except Exception:
        assigned = False
    recovery = getattr(app.tables, "recovery", None)
    recovered = bool(recovery is not None and recovery.completed.is_set())
    return {
        "partitions_assigned": assigned,
        "tables_recovered": recovered,
        "model_loaded": rt.broadcast_caught_up.is_set(),
    }


def segment_catalogue(rt: Runtime) -> dict[str, Any]:
    """Every segment with its label, size (all partitions) and what defines it."""
    sizes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    previous: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    churn_levels: dict[str, int] = defaultdict(int)
    customers = 0
    for stats in rt.remote_stats.values():
        customers += int(stats.get("customers") or 0)
        for level, n in (stats.get("churn_levels") or {}).items():
            churn_levels[level] += n
        for seg_type, counts in (stats.get("sizes") or {}).items():
            for seg, n in counts.items():
                sizes[seg_type][seg] += n
        for seg_type, counts in (stats.get("sizes_day_ago") or {}).items():
            for seg, n in counts.items():
                previous[seg_type][seg] += n
    segments: list[dict[str, Any]] = []
    for entry in rt.processor.rules.segment_catalogue():
        seg_type, seg_id = entry["type"], entry["id"]
        segments.append(
            {
                **entry,
                "size": sizes[seg_type].get(seg_id, 0),
                "growth_1d": sizes[seg_type].get(seg_id, 0) - previous[seg_type].get(seg_id, 0),
            }
        )
    snapshot = (rt.model_message or {}).get("snapshot") or {}
    for cluster_id, label in sorted((snapshot.get("labels") or {}).items()):
        segments.append(
            {
                "type": "cluster",
                "id": cluster_id,
                "label": label,
                "definition": "nearest centroid of the behavioural cluster model",
                # what characterises it: the distinguishing dimensions in words, the
                # centroid in z-scores (0 = average customer) and in the vector's units
                "traits": (snapshot.get("traits") or {}).get(cluster_id, []),
                "profile": (snapshot.get("profiles") or {}).get(cluster_id, {}),
                "centroid": (snapshot.get("centroids") or {}).get(cluster_id, {}),
                "model_share": (snapshot.get("shares") or {}).get(cluster_id),
                "size": sizes["cluster"].get(cluster_id, 0),
                "growth_1d": sizes["cluster"].get(cluster_id, 0)
                - previous["cluster"].get(cluster_id, 0),
            }
        )
    segments += churn_catalogue(rt)
    kpis = catalogue_kpis(rt, segments)  # KPIs of every segment, whole base
    as_of = snapshot.get("as_of_ms")
    return {
        "kpis": kpis,
        "model_version": snapshot.get("model_version"),
        # the stream time the model is as of (it moves once per day of stream time)
        "model_as_of": format_ts(as_of) if isinstance(as_of, int) else None,
        "clusters": snapshot.get("k", 0),
        "quality": snapshot.get("quality", {}),
        # Splits and merges of clusters, announced rather than silently renumbered.
        "model_events": snapshot.get("events", []),
        # Totals over all partitions, as of each partition's last sweep.
        "customers": customers,
        "churn_levels": dict(churn_levels),
        "segments": segments,
        # The churn model scoring churn-risk: weights, BTYD fit, progressive validation.
        "churn_model": rt.processor.churn_model(rt.churn_params).to_dict(),
    }
