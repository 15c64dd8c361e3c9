"""Valid example events of every topic, shared by the schema tests."""

from __future__ import annotations

import copy
from typing import Any

NOW_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z, the wall clock the tests pretend

INPUT_EXAMPLES: dict[str, dict[str, Any]] = {
    "purchases": {
        "event_id": "p-1",
        "customer_id": "c-1",
        "ts": "2023-11-14T21:00:00Z",
        "order_id": "o-1",
        "amount": 59.9,
        "currency": "EUR",
        "items": 3,
        "category": "electronics",
        "channel": "web",
    },
    "browsing": {
        "event_id": "b-1",
        "customer_id": "c-1",
        "ts": "2023-11-14T23:00:00+02:00",
        "session_id": "s-1",
        "action": "product_view",
        "page": "/p/123",
        "category": "books",
        "platform": "ios",
    },
    "support": {
        "event_id": "t-1",
        "customer_id": "c-1",
        "ts": 1_699_990_000_000,
        "ticket_id": "T-9",
        "status": "opened",
        "priority": "high",
        "channel": "chat",
    },
    "feedback": {
        "event_id": "f-1",
        "customer_id": "c-1",
        "ts": "2023-11-14T10:00:00.250-05:00",
        "kind": "nps",
        "score": 9,
        "comment": "great",
    },
    "profiles": {
        "event_id": "pr-1",
        "customer_id": "c-1",
        "ts": "2023-11-01T00:00:00Z",
        "attributes": {
            "country": "DE",
            "region": "Bavaria",
            "city": "Munich",
            "age": 41,
            "gender": "female",
            "company_size": "51-200",
            "industry": "retail",
            "plan": "pro",
            "device": "mobile",
            "os": "ios",
            "browser": "safari",
            "signup_ts": "2019-05-01T08:00:00Z",
            "loyalty_member": True,
        },
    },
    "privacy": {
        "event_id": "pv-1",
        "customer_id": "c-1",
        "ts": 1_699_999_000_000,
        "action": "erase",
        "reason": "GDPR art. 17",
    },
}

REQUIRED: dict[str, list[str]] = {
    "purchases": ["order_id", "amount"],
    "browsing": ["session_id", "action"],
    "support": ["ticket_id", "status"],
    "feedback": ["kind", "score"],
    "profiles": ["attributes"],
    "privacy": ["action"],
}
COMMON = ["event_id", "customer_id", "ts"]

OUTPUT_EXAMPLES: dict[str, dict[str, Any]] = {
    "segment-changes": {
        "event_id": "seg:c-1:7",
        "customer_id": "c-1",
        "seq": 7,
        "ts": "2023-11-14T21:00:00.000Z",
        "segment_type": "lifecycle",
        "previous": "active",
        "current": "at_risk",
        "initial": False,
        "label": "At risk: no purchase for 45 days",
        "reasons": ["recency 45 days > 30"],
        "model_version": "rules-1",
        "cause": "day:2023-11-14",
        "experiments": [{"name": "winback", "arm": "treatment"}],
    },
    "churn-risk": {
        "event_id": "churn:c-1:8",
        "customer_id": "c-1",
        "seq": 1,
        "ts": "2023-11-14T21:00:00.000Z",
        "score": 0.72,
        "level": "high",
        "previous_level": None,
        "initial": True,
        "reasons": ["inactive 45 days", "2 escalated tickets"],
        "model_version": "churn-v3",
        "cause": "event:p-77",
        "experiments": [],
    },
    "dead-letters": {
        "event_id": "dlq:purchases:0:12",
        "source_topic": "purchases",
        "partition": 0,
        "offset": 12,
        "key": "c-1",
        "key_encoding": "utf-8",
        "error": {"reason": "schema", "field": "amount", "message": "amount must be >= 0"},
        "payload": '{"amount": -1}',
        "payload_encoding": "utf-8",
        "ts": "2023-11-14T22:13:20.000Z",
    },
    "privacy-confirmations": {
        "event_id": "privacy:pv-1",
        "customer_id": "c-1",
        "action": "erase",
        "request_event_id": "pv-1",
        "ts": "2023-11-14T21:00:00.000Z",
        "status": "done",
        "details": {"table_entries": 1, "changelog_tombstones": 1},
    },
    "segment-memberships": {
        "customer_id": "c-1",
        "segment_type": "lifecycle",
        "segment": "at_risk",
        "label": "At-risk customer — no purchase for 46 days",
        "ts": "2023-11-14T00:00:00.000Z",
        "event_id": "3f2a1c0b9d8e7f6a5b4c3d2e1f0a9b8c",
    },
}


def example(topic: str) -> dict[str, Any]:
    """Return a deep copy of the valid example of ``topic``."""
    source = INPUT_EXAMPLES if topic in INPUT_EXAMPLES else OUTPUT_EXAMPLES
    return copy.deepcopy(source[topic])
