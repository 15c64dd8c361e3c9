"""The in-process cost of the daily passes (streams/tools/pass_cost.py)."""

from __future__ import annotations

from streams.tools.pass_cost import OUTCOMES, measure


def test_both_runs_pass_over_the_same_customers_and_the_index_skips_silent_ones() -> None:
    events, (indexed, everyone) = measure(customers=40, days=40, silent_days=20)
    assert events > 0
    assert indexed.indexed and not everyone.indexed
    visits = indexed.visits + indexed.silent_visits
    assert visits == everyone.visits + everyone.silent_visits > 0
    # every visit ends in one outcome
    assert sum(indexed.outcomes[o] for o in OUTCOMES) == visits
    assert sum(everyone.outcomes[o] for o in OUTCOMES) == visits
    assert everyone.outcomes["skipped"] == 0
    # 20 days without events: customers silent for a week are skipped
    assert indexed.outcomes["skipped"] > indexed.silent_visits / 4
    assert indexed.outcomes["evaluated"] < everyone.outcomes["evaluated"]
    assert "| with the index |" in indexed.line()
