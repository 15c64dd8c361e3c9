"""Published JSON Schemas of every topic, and their compiled validators.

The schema files ``schemas/<topic>.schema.json`` (JSON Schema draft 2020-12) are
the contract with producers and consumers in any language; this package checks
input events against them on the hot path and builds dead-letter records.

Examples
--------
>>> from schemas import validate, INPUT_TOPICS
>>> "purchases" in INPUT_TOPICS
True
>>> validate("privacy", '{"event_id": "p1", "customer_id": "c1", "ts": 1700000000000,'
...          ' "action": "erase"}')["action"]
'erase'
"""

from schemas.deadletter import dead_letter
from schemas.validation import (
    INPUT_TOPICS,
    OUTPUT_TOPICS,
    REASONS,
    InvalidEvent,
    load_schema,
    validate,
    validate_output,
)

__all__ = [
    "INPUT_TOPICS",
    "OUTPUT_TOPICS",
    "REASONS",
    "InvalidEvent",
    "dead_letter",
    "load_schema",
    "validate",
    "validate_output",
]
