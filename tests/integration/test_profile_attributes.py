"""Profile attributes on the real broker: only the allow-listed ones are kept,
within the limits; the rest is counted, never stored (not in the changelog)
and never returned by ``GET /customers/{id}``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.conftest import Stack, metric_total, wait_for

pytestmark = pytest.mark.timeout(180)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EMAIL = "carol.private@example.org"
SSN = "078-05-1120"


def profile(customer: str, n: int, attributes: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": f"{customer}-p{n}", "customer_id": customer, "ts": T0 + n,
            "attributes": attributes}  # fmt: skip


def test_only_allowed_profile_attributes_are_kept(stack_factory: Any) -> None:
    stack: Stack = stack_factory(
        partitions=1,
        SEGMENTER_PROFILE_ATTRIBUTES="+loyalty_tier",
        SEGMENTER_PROFILE_MAX_ATTRIBUTES="4",
    )
    worker = stack.worker()
    junk = {f"field_{i}": f"value {i}" for i in range(2000)}
    events = [
        profile("carol", 1, {"country": "DE", "plan": "pro", "email": EMAIL, "ssn": SSN,
                             "loyalty_tier": "gold", **junk}),
        # a fourth and fifth attribute (the limit is 4 per customer), a value too long
        profile("carol", 2, {"industry": "retail", "device": "mobile", "plan": "enterprise",
                             "loyalty_tier": "x" * 201}),
    ]  # fmt: skip
    asyncio.run(stack.produce([("profiles", e) for e in events]))
    wait_for(
        lambda: metric_total(worker, "segmenter_events_processed_total", topic="profiles") == 2
    )

    status, body = worker.get("/customers/carol")
    assert status == 200
    assert body["features"]["profile"] == {
        "country": "DE",
        "plan": "enterprise",
        "loyalty_tier": "gold",
        "industry": "retail",
    }
    rejected = {
        reason: metric_total(worker, "segmenter_profile_attributes_rejected_total", reason=reason)
        for reason in ("not_allowed", "too_long", "too_many")
    }
    assert rejected == {"not_allowed": 2002, "too_long": 1, "too_many": 1}

    changelog = asyncio.run(stack.consume_raw(f"{stack.app_id}-{stack.prefix}customers-changelog"))
    stored = b"".join(value or b"" for _, value in changelog)
    assert b"gold" in stored
    for secret in (EMAIL.encode(), SSN.encode(), b"field_1999", b"x" * 201):
        assert secret not in stored
    assert worker.proc is not None and worker.proc.poll() is None
