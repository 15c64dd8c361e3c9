"""HTTP views of segment KPIs, audiences and experiments (whole base, any worker).

* ``GET /segments`` — :func:`catalogue_kpis` adds each segment's ``kpis``,
  summed from the per-partition records every owner publishes on
  ``stream-clock`` (:mod:`models.kpis`); no customer is read.
* ``GET /segments/{segment_type}/{id}/members`` — a page of a segment's
  members, read partition by partition from their owners (:mod:`streams.worker.audiences`).
* ``GET /experiments`` — every configured experiment, its arms and uplifts
  (:mod:`models.experiments`).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from faust.types import TP
from yarl import URL

from models.eventtime import day_of
from models.experiments import CHURN_SEGMENTS, experiment_report, known_segments
from models.kpis import KPI_NAMES, Totals, merge_records, segment_kpis
from streams.worker.audiences import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    SCAN_BUDGET,
    MemberPage,
    decode_cursor,
    encode_cursor,
    scan_members,
)
from streams.worker.faust_adapter import partition_owner_url
from streams.worker.runtime import Runtime

__all__ = [
    "catalogue_kpis",
    "churn_catalogue",
    "experiments_document",
    "kpi_totals",
    "register_segment_views",
]

log = logging.getLogger(__name__)

JSON = "application/json"
# A request a worker forwards to a partition's owner: answer for that partition only.
PARTITION_HEADER = "X-Segmenter-Partition"
CHURN_LABELS = {"low": "Low churn risk", "medium": "Medium churn risk", "high": "High churn risk"}


def kpi_totals(rt: Runtime) -> Totals | None:
    """The whole base's KPI sums, ``None`` while a partition has published none yet."""
    records = []
    for partition in range(rt.settings.partitions):
        record = rt.remote_stats.get(f"p{partition}", {}).get("kpis")
        if record is None:
            return None
        records.append(record)
    return merge_records(records)


def churn_catalogue(rt: Runtime) -> list[dict[str, Any]]:
    """The churn-risk levels as segments of the type ``churn`` (sizes from the sweeps)."""
    sizes = {level: 0 for level in CHURN_SEGMENTS}
    for stats in rt.remote_stats.values():
        for level, n in (stats.get("churn_levels") or {}).items():
            sizes[level] = sizes.get(level, 0) + n
    return [
        {
            "type": "churn",
            "id": level,
            "label": CHURN_LABELS[level],
            "definition": f"churn-risk level {level} (the last level on churn-risk)",
            "size": sizes[level],
        }
        for level in CHURN_SEGMENTS
    ]


def catalogue_kpis(rt: Runtime, segments: list[dict[str, Any]]) -> dict[str, Any]:
    """Add ``kpis`` to every segment of the catalogue; return the KPIs' context."""
    totals = kpi_totals(rt)
    today = day_of(rt.clock.now_ms)
    for segment in segments:
        key = f"{segment['type']}.{segment['id']}"
        segment["kpis"] = (
            segment_kpis(totals, key, today) if totals is not None else dict.fromkeys(KPI_NAMES)
        )
    return {
        "as_of_day": format_day(today) if rt.clock.now_ms else None,
        "complete": totals is not None,
    }


def format_day(day: int) -> str:
    """``YYYY-MM-DD`` of a day number."""
    from models.eventtime import MS_PER_DAY, format_ts

    return format_ts(day * MS_PER_DAY)[:10]


def experiments_document(rt: Runtime) -> dict[str, Any]:
    """The ``GET /experiments`` document."""
    totals = kpi_totals(rt)
    reports = []
    for experiment in rt.experiments:
        arms = totals.xp.get(experiment.name, {}) if totals is not None else {}
        report = experiment_report(experiment, arms)
        report["complete"] = totals is not None
        reports.append(report)
    return {"experiments": reports}


def register_segment_views(app: Any, rt: Runtime, customers: Any, route_topic: Any) -> None:
    """``GET /segments/{type}/{id}/members`` and ``GET /experiments``."""
    members = _MembersView(app, rt, customers, route_topic.get_topic_name())

    @app.page("/segments/{segment_type}/{segment_id}/members")
    async def get_members(web: Any, request: Any, segment_type: str, segment_id: str) -> Any:
        return await members.get(web, request, segment_type, segment_id)

    @app.page("/experiments")
    async def get_experiments(web: Any, request: Any) -> Any:
        return _json_response(web, experiments_document(rt))


def _json_response(web: Any, value: Any, status: int = 200) -> Any:
    return web.bytes(orjson.dumps(value), content_type=JSON, status=status)


class _MembersView:
    """``GET /segments/{type}/{id}/members``: a page of members, partition by partition.

    A worker reads the partitions it owns from its table and asks the owner
    of every other one for its part of the page (forwarded with
    :data:`PARTITION_HEADER`: that partition only), until the page is full,
    the scan budget is spent or every partition is read.
    """

    def __init__(self, app: Any, rt: Runtime, customers: Any, topic_name: str) -> None:
        self.app = app
        self.rt = rt
        self.customers = customers
        self.topic_name = topic_name
        self.settings = rt.settings
        self.known = known_segments(rt.processor.rules.config)

    @property
    def partitions(self) -> int:
        return int(self.settings.partitions)

    async def get(self, web: Any, request: Any, segment_type: str, segment_id: str) -> Any:
        """The view: check the segment and the query, then read the page."""
        if not self.segment_exists(segment_type, segment_id):
            return _json_response(
                web,
                {"error": f"unknown segment {segment_type}.{segment_id} (see GET /segments)"},
                404,
            )
        try:
            partition, after, limit, budget = self._page_request(request.query)
        except ValueError as exc:
            return _json_response(web, {"error": str(exc)}, 400)
        if PARTITION_HEADER in request.headers:  # forwarded: this partition only
            if not self.owns(partition):
                return _json_response(web, {"error": "partition moved; retry"}, 503)
            page = self.local_page(partition, segment_type, segment_id, after, limit, budget)
            return _json_response(web, page.to_json())
        return await self._gather(
            web, request, segment_type, segment_id, partition, after, limit, budget
        )

    def _page_request(self, query: Any) -> tuple[int, bytes | None, int, int]:
        """The cursor's partition and key, the limit and the budget; ``ValueError`` if invalid."""
        partition, after = decode_cursor(query["cursor"]) if query.get("cursor") else (0, None)
        limit = int(query.get("limit", DEFAULT_LIMIT))
        budget = int(query.get("budget", SCAN_BUDGET))
        if not 1 <= limit <= MAX_LIMIT or not 1 <= budget <= SCAN_BUDGET:
            raise ValueError(f"limit must be from 1 to {MAX_LIMIT}")
        if partition >= self.partitions:
            raise ValueError("invalid cursor: no such partition")
        return partition, after, limit, budget

    async def _gather(
        self,
        web: Any,
        request: Any,
        segment_type: str,
        segment_id: str,
        partition: int,
        after: bytes | None,
        limit: int,
        budget: int,
    ) -> Any:
        """Read the partitions from the cursor on until the page is full or the budget spent."""
        members: list[dict[str, Any]] = []
        scanned = 0
        while partition < self.partitions and len(members) < limit and scanned < budget:
            want, left = limit - len(members), budget - scanned
            if self.owns(partition):
                page = self.local_page(partition, segment_type, segment_id, after, want, left)
            else:
                found = await self.remote_page(request, partition, after, want, left)
                if found is None:
                    return _json_response(
                        web,
                        {"error": f"partition {partition} has no reachable owner now; retry"},
                        503,
                    )
                page = found
            members += page.members
            scanned += page.scanned
            if page.exhausted:
                partition, after = partition + 1, None
            else:
                after = page.last_key
        more = partition < self.partitions
        return _json_response(
            web,
            {
                "segment_type": segment_type,
                "id": segment_id,
                "members": members,
                "next_cursor": encode_cursor(partition, after) if more else None,
                "scanned": scanned,
            },
        )

    def segment_exists(self, segment_type: str, segment: str) -> bool:
        """A known segment; a cluster one of the current model's."""
        if segment_type == "cluster":
            snapshot = (self.rt.model_message or {}).get("snapshot") or {}
            return segment in (snapshot.get("labels") or {})
        ids = self.known.get(segment_type)
        return ids is not None and segment in ids

    def owns(self, partition: int) -> bool:
        """Whether this worker holds ``partition`` of the table now (not while rebalancing)."""
        try:
            return any(
                tp.topic == self.topic_name and tp.partition == partition
                for tp in self.app.consumer.assignment()
            )
        except Exception:
            return False

    def local_page(
        self,
        partition: int,
        segment_type: str,
        segment: str,
        after: bytes | None,
        limit: int,
        budget: int,
    ) -> MemberPage:
        """A page of ``partition``'s members from this worker's table."""
        router = self.app.pipeline.router

        def belongs(key: bytes) -> bool:
            return bool(router.partition_of(orjson.loads(key)) == partition)

        return scan_members(
            self.customers.data, partition, segment_type, segment, after, limit, budget, belongs
        )

    async def remote_page(
        self, request: Any, partition: int, after: bytes | None, limit: int, budget: int
    ) -> MemberPage | None:
        """A page of ``partition``'s members from its owner; ``None`` if it cannot answer."""
        app = self.app
        owner = partition_owner_url(app, TP(self.topic_name, partition))
        if owner is None:
            return None
        url = (
            URL(owner)
            .with_path(request.path)
            .with_query(
                {
                    "cursor": encode_cursor(partition, after),
                    "limit": str(limit),
                    "budget": str(budget),
                }
            )
        )
        headers = {PARTITION_HEADER: str(partition)}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        async with app.http_client.get(url, headers=headers) as response:
            if response.status != 200:
                log.warning(
                    "partition %s owner answered %s to a members page", partition, response.status
                )
                return None
            return MemberPage.from_json(orjson.loads(await response.read()))
