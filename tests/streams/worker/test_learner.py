"""The learner host: learning, and erasures also while the model is frozen."""

from __future__ import annotations

import random

from models.customer import new_state
from models.processing import CustomerProcessor
from streams.settings import Settings
from streams.worker.app import build_runtime
from streams.worker.learner import LearnerHost


def samples(n: int, seed: int = 3) -> list[dict[str, object]]:
    rng = random.Random(seed)
    return [
        {"k": f"key{i}", "x": {"purchase_rate": rng.uniform(0, 3), "dormancy": rng.uniform(0, 5)}}
        for i in range(n)
    ]


def test_a_frozen_learner_learns_nothing_but_still_forgets_erased_customers() -> None:
    host = LearnerHost(build_runtime(Settings(cluster_warmup=40)))
    host.learn(samples(50))
    learner = host.ensure_learner()
    seen, pending = learner.samples, host.pending

    forgotten = host.learn([*samples(10, seed=4), {"erase": "key7"}], learning=False)

    assert forgotten == 1
    assert (learner.samples, host.pending) == (seen, pending)  # nothing learned
    assert not learner.forget("key7")  # already gone
    assert learner.forget("key8")  # the others stay


def test_only_a_second_browsing_event_of_the_day_skips_evaluation() -> None:
    state = new_state()
    day = 20_000
    state["eval_day"] = day  # e.g. the customer's profile event was evaluated today
    assert not CustomerProcessor.can_skip_evaluation(state, "browsing", day)
    state["browse_day"] = day
    assert CustomerProcessor.can_skip_evaluation(state, "browsing", day)
    assert not CustomerProcessor.can_skip_evaluation(state, "purchases", day)
    state["churn"] = {"level": "high"}
    assert not CustomerProcessor.can_skip_evaluation(state, "browsing", day)
