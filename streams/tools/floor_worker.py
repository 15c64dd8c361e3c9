"""A ``segmenter worker`` that evaluates nothing: the floor of the benchmarks.

``python -m streams.tools.floor_worker worker`` is ``segmenter worker`` with
:meth:`models.processing.CustomerProcessor.evaluate` and ``catch_up`` replaced
by ones that change nothing: no rule, cluster or churn evaluation, no per-day
catch-up. Everything else an event goes through runs as in a worker (the batch
consumer path, validation, privacy gate, event-time order, dedup, the feature
update, state, outputs, commits). Its rate is what a cheaper evaluation could
at best reach (``python -m streams.tools.bench --floor``; ``streams.tools.hotpath``
measures the same in-process). Its outputs are meaningless: never deploy it.
"""

from __future__ import annotations

from typing import Any

from models.processing import CustomerProcessor, Result

__all__ = ["evaluate_nothing", "main"]


def _evaluated(customer_id: str, state: Any, *args: Any, **kwargs: Any) -> Result:
    return Result("new", state)


def _caught_up(customer_id: str, state: Any, *args: Any, **kwargs: Any) -> Result:
    return Result("unchanged", state)


def evaluate_nothing(target: Any) -> None:
    """Make ``target`` — a :class:`~models.processing.CustomerProcessor`, or the class
    itself (every processor then) — evaluate nothing.

    >>> from models.churn import ChurnScorer
    >>> from models.rules import RuleEngine
    >>> processor = CustomerProcessor(rules=RuleEngine(), scorer=ChurnScorer())
    >>> evaluate_nothing(processor)
    >>> result = processor.handle("c1", None, "purchases", {"event_id": "p1",
    ...     "customer_id": "c1", "ts": 0, "order_id": "o1", "amount": 10.0,
    ...     "currency": "EUR", "items": 1}, assigner=None)
    >>> result.status, result.segment_changes, result.state["seg"]
    ('new', [], {})
    """
    on_class = isinstance(target, type)  # (methods, or the instance's own attributes)
    setattr(target, "evaluate", staticmethod(_evaluated) if on_class else _evaluated)  # noqa: B010
    setattr(target, "catch_up", staticmethod(_caught_up) if on_class else _caught_up)  # noqa: B010


def main() -> None:
    """``segmenter`` with every processor evaluating nothing."""
    from streams.ops.cli import main as segmenter

    evaluate_nothing(CustomerProcessor)
    segmenter()


if __name__ == "__main__":
    main()
