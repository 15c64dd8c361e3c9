"""The daily pass's step: a chunk of a partition's customers brought up to the pass's day.

For each customer: skip them when their due day is later
(:mod:`streams.worker.due_index`: their statistics come from the plan, their
state is not read), else evaluate the days since they were last up to date
(:meth:`models.processing.CustomerProcessor.review`), write and emit what
changed, and plan their next due day (:func:`models.due.plan`). Called by
:meth:`streams.worker.pipeline.Pipeline.review_partition`, one batch per chunk.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from models import customer
from models.customer import CustomerState
from models.due import plan, refresh_day
from models.eventtime import day_of
from models.kpis import compact_contribution
from models.processing import Result, churn_training_items
from streams.codec import decode_state, encode
from streams.worker.sweep import PartitionSweep, customer_stats

if TYPE_CHECKING:
    from streams.worker.pipeline import Batch, Pipeline

__all__ = ["PLAN_AFTER_SILENT_DAYS", "counted", "review_chunk"]

log = logging.getLogger(__name__)

#: A customer is planned once silent this many days; before, the pass evaluates
#: them every day (docs/benchmark.md, 2026-12-06 "the due-day index": planning a
#: customer who has an event two days later costs more than it saves).
PLAN_AFTER_SILENT_DAYS = 7


def review_chunk(
    pipeline: Pipeline, keys: list[str], partition: int, sweep: PartitionSweep, batch: Batch
) -> int:
    """Bring a chunk of the partition's customers up to the pass's day and count
    them into its statistics (:meth:`Pipeline.review_partition`); the changed ones."""
    started = time.perf_counter()
    changed = 0
    outcomes = {"evaluated": 0, "skipped": 0, "refreshed": 0, "not_due": 0}
    day = day_of(sweep.clock_ms)
    reviewed_through = pipeline.rt.reviewed_through(partition)
    processor = pipeline.rt.processor
    model_version = pipeline.rt.assigner_signature()
    kpis = pipeline.rt.kpis
    index = pipeline.rt.due_index
    for customer_id in keys:
        # (the memory:// store of the tests lists every partition's keys)
        ours = pipeline.router.partition_of(customer_id) == partition
        key = pipeline.customers.key_bytes(customer_id)
        skipped = index.skipped(partition, customer_id, day)
        if skipped is not None and skipped.stats is not None:
            # Nothing can change for them before their due day: not even read,
            # unless the learner's weekly sample of them is due.
            refresh_due = skipped.refresh_day is not None and skipped.refresh_day <= day
            if refresh_due:
                _refresh(pipeline, customer_id, partition, day, batch)
            sweep.add(skipped.stats)
            kpis.count(partition, key, skipped.kpis if ours else None)
            outcomes["refreshed" if refresh_due else "skipped"] += 1
            continue
        state = decode_state(pipeline.customers.get(customer_id, partition))
        if state is None or customer.is_opted_out(state):
            kpis.count(partition, key, None)
            outcomes["not_due"] += 1
            continue
        old_kpis = state.get("kc")
        due = processor.due_for_review(state, day, model_version)
        outcomes["evaluated" if due else "not_due"] += 1
        if due:
            # (a planned customer is up to date through the day before their due day,
            # but for the refresh samples of the days no pass evaluated)
            since = index.since(partition, customer_id, day, reviewed_through)
            try:
                refreshed = index.planned(partition, customer_id) is not None and (
                    _take_refreshes(pipeline, customer_id, state, since)
                )
                result = processor.review(
                    customer_id,
                    state,
                    day,
                    pipeline.rt.assigner,
                    pipeline.rt.churn_params,
                    since,
                )
            except Exception:  # one customer's bad state must not stop the sweep
                log.exception("review failed for a customer of this partition")
                kpis.count(partition, key, old_kpis if ours else None)
                continue
            _plan(pipeline, customer_id, partition, state, result, old_kpis)
            # (a KPI contribution that moved is written too: models.kpis)
            if result.write or refreshed or state.get("kc") is not old_kpis:
                pipeline.customers.put(batch.customers, customer_id, partition, encode(state))
                pipeline.count_kpis(customer_id, partition, old_kpis, state, batch)
                pipeline.emit(result, None, batch)
                pipeline.rt.count_cluster_changes(partition, result.segment_changes)
                if result.refresh:
                    pipeline.add_training_sample(customer_id, result)
                changed += 1
            if result.churn_labels:
                pipeline.rt.training_buffer.extend(churn_training_items(result))
        sweep.count(state)
        kpis.count(partition, key, state.get("kc") if ours else None)
    pipeline.rt.metrics.sweep_chunk(outcomes, time.perf_counter() - started)
    return changed


def _refresh(pipeline: Pipeline, customer_id: str, partition: int, day: int, batch: Batch) -> None:
    """A skipped customer's learner refresh samples due by ``day``: read, sampled, written."""
    index = pipeline.rt.due_index
    state = decode_state(pipeline.customers.get(customer_id, partition))
    if state is None:  # (gone: an erasure forgets the plan first)
        index.forget(partition, customer_id)
        return
    if _take_refreshes(pipeline, customer_id, state, day):
        pipeline.customers.put(batch.customers, customer_id, partition, encode(state))
    index.refreshed(partition, customer_id, refresh_day(state))


def _take_refreshes(
    pipeline: Pipeline, customer_id: str, state: CustomerState, through: int
) -> bool:
    """The learner refresh samples of a planned customer due on the days up to
    ``through`` that no pass evaluated, each on its own day (the features read then),
    as the evaluation of that day would have taken it; whether any was taken."""
    taken = False
    due = refresh_day(state)
    while due is not None and due <= through:
        result = pipeline.rt.processor.refresh(state, due)
        if not result.write:
            break
        pipeline.add_training_sample(customer_id, result)
        taken = True
        due = refresh_day(state)
    return taken


def _plan(
    pipeline: Pipeline,
    customer_id: str,
    partition: int,
    state: CustomerState,
    result: Result,
    old_kpis: Any,
) -> None:
    """Keep the customer's next due day (``streams.worker.due_index``).

    A plan costs about two evaluations (it probes the days ahead, more of them
    the more recent activity leaves windows), so only a customer silent for
    :data:`PLAN_AFTER_SILENT_DAYS` is planned: most customers with a recent
    event have another before the plan would pay. The plan looks only as far
    as the calendar's due day (a refresh sample, a snapshot: at most a week);
    a plan reused after a pass that changed nothing looks further from where
    it stopped.
    """
    index = pipeline.rt.due_index
    if not index.enabled:
        return
    previous = index.planned(partition, customer_id)
    index.forget(partition, customer_id)
    newest_event = state["f"].get("hi") or 0
    if state["eval_day"] - day_of(newest_event) < PLAN_AFTER_SILENT_DAYS:
        return  # (evaluated again at the next pass, as without the index)
    # The previous plan's analysis still holds after a pass that took only
    # churn snapshots or refresh samples (models.due.plan, ``reuse``).
    unmoved = not (result.segment_changes or result.churn_events) and (state.get("kc") is old_kpis)
    try:
        due = plan(
            pipeline.rt.processor,
            customer_id,
            state,
            pipeline.rt.assigner,
            pipeline.rt.churn_params,
            reuse=previous if unmoved else None,
            look_ahead_days=0,
            refresh=False,  # (taken without an evaluation: _refresh)
        )
    except Exception:  # no plan: the customer is evaluated at every pass, as before
        log.exception("could not plan the next review of a customer of this partition")
        return
    index.record(
        partition,
        customer_id,
        due,
        customer_stats(state),
        counted(pipeline, state),
        refresh_day(state),
    )


def counted(pipeline: Pipeline, state: CustomerState) -> Any:
    """The customer's KPI contribution as the pass sums it, kept with their plan."""
    return compact_contribution(state.get("kc"), pipeline.rt.kpis.floor())
