"""Profile attributes through the ingest agent and the HTTP view, no Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from models.rules import parse_rules
from streams.codec import decode_state
from streams.settings import Settings
from streams.worker.app import build_runtime, check_rules_read_allowed_attributes
from tests.streams.conftest import Feeder, event

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


async def test_only_allowed_attributes_reach_the_record(app: Any) -> None:
    attributes = {"country": "DE", "email": "a@b.example", "plan": "pro"}
    await Feeder(app).put("profiles", event("p1", T0, attributes=attributes), key=b"c1")
    state = decode_state(app.pipeline.customers.get("c1", 0))
    assert state is not None and set(state["f"]["pr"]) == {"country", "plan"}
    metrics = app.segmenter.metrics
    assert metrics.sample("segmenter_profile_attributes_rejected_total", reason="not_allowed") == 1


async def test_a_record_written_before_the_allow_list_is_cleaned(app: Any) -> None:
    # Stored by an older release: the e-mail is deleted by the customer's next
    # profile event, and never shown in between.
    feeder = Feeder(app)
    await feeder.put("profiles", event("p1", T0, attributes={"country": "DE"}), key=b"c1")
    state = decode_state(app.pipeline.customers.get("c1", 0))
    assert state is not None
    state["f"]["pr"]["email"] = [T0, "p0", "a@b.example"]
    view = app.segmenter.processor.view("c1", state, T0)
    assert "email" in view["features"]["profile"]  # what the view filter has to remove
    policy = app.segmenter.profile_policy
    assert policy.visible(view["features"]["profile"]) == {"country": "DE"}
    app.pipeline.customers.table.data[b'"c1"'] = orjson.dumps(state)
    await feeder.put("profiles", event("p2", T0 + 1, attributes={"plan": "pro"}), key=b"c1")
    state = decode_state(app.pipeline.customers.get("c1", 0))
    assert state is not None and set(state["f"]["pr"]) == {"country", "plan"}


def test_a_rule_on_an_attribute_that_is_never_kept_fails_at_start(tmp_path: Path) -> None:
    config = parse_rules(
        [{"name": "tiers", "cases": [{"id": "gold", "when": "profile.loyalty == 'gold'"}]}]
    )
    policy = build_runtime(Settings()).profile_policy
    with pytest.raises(ValueError, match=r"SEGMENTER_PROFILE_ATTRIBUTES=\+loyalty"):
        check_rules_read_allowed_attributes(config, policy)
    allowed = build_runtime(Settings(profile_attributes="+loyalty")).profile_policy
    check_rules_read_allowed_attributes(config, allowed)
