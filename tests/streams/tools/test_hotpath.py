"""The in-process stage profile (streams/tools/hotpath.py) accounts for the bench's mix."""

from __future__ import annotations

import pytest

from streams.tools.hotpath import STAGES, main, measure, render


def test_every_event_is_handled_and_every_stage_is_timed() -> None:
    results = measure(customers=300, events=6_000, batch_size=500)
    assert results["events"] == sum(results["per_topic"].values()) == 6_000
    seconds = results["seconds"]
    timed = {stage for stage, _ in seconds}
    # A trained model (over 200 customers: the learner's warm-up) is installed,
    # so cluster assignment runs as in a worker.
    assert {"parse", "apply", "handle", "evaluate", "cluster", "commit"} <= timed
    assert timed <= set(STAGES)
    # Every applied event of a topic went through `apply` under its own topic.
    calls = results["calls"]
    for topic, count in results["per_topic"].items():
        assert calls.get(("parse", topic), 0) == count
    # Nested stages fit inside the stage that contains them.
    for stage, parent in STAGES.items():
        if parent:
            inner = sum(v for (s, _), v in seconds.items() if s == stage)
            outer = sum(v for (s, _), v in seconds.items() if s == parent)
            assert inner <= outer * 1.05 + 1e-3, (stage, parent)
    # Each daily pass visits every stored customer once, each in its own partition,
    # with and without the due-day index.
    for passes in (results["passes"], results["passes_every"]):
        assert len(passes) == 28
        assert {customers for customers, _ in passes} == {passes[0][0]}
        assert 0 < passes[0][0] <= 300
    # The "state read" stage times the decode the event path does (the working set).
    assert calls.get(("state read", "purchases"), 0) > 0
    # The floor run skips every evaluation, so it costs less than the whole.
    assert 0 < results["floor_cpu_s"] < results["plain_cpu_s"]
    # ... and the models' core (validation, dedup, features) is part of the floor.
    assert 0 < results["core_cpu_s"] < results["floor_cpu_s"]
    table = render(results)
    assert "µs per event" in table and "| parse |" in table
    assert "µs per customer" in table
    assert "the floor every event pays" in table


def test_the_plain_option_reports_the_per_event_cpu_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--plain", "--customers", "200", "--events", "2000", "--batch-size", "500"]) == 0
    out = capsys.readouterr().out
    assert "2,000 events" in out and "µs per event" in out
    assert "stage" not in out and "floor" not in out  # nothing else ran
