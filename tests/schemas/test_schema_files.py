"""The published schema files: valid Draft 2020-12, documented, and consistent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from schema_examples import COMMON, INPUT_EXAMPLES, OUTPUT_EXAMPLES, REQUIRED

from schemas import INPUT_TOPICS, OUTPUT_TOPICS, load_schema, validate

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
ALL_TOPICS = INPUT_TOPICS + OUTPUT_TOPICS


def properties(schema: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(path, subschema)`` of every property declared anywhere in ``schema``."""
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            yield f"{path}.{name}".lstrip("."), sub
        for key, sub in schema.items():
            if key == "properties":
                for name, child in sub.items():
                    yield from properties(child, f"{path}.{name}".lstrip("."))
            elif isinstance(sub, dict | list):
                yield from properties(sub, path)
    elif isinstance(schema, list):
        for item in schema:
            yield from properties(item, path)


def test_schema_files_match_topics() -> None:
    names = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert names == set(ALL_TOPICS)


@pytest.mark.parametrize("topic", ALL_TOPICS)
def test_is_a_valid_draft_2020_12_schema(topic: str) -> None:
    schema = json.loads((SCHEMA_DIR / f"{topic}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://segmenter.dev/schemas/{topic}.schema.json"
    assert schema["title"] and schema["description"]
    assert schema == load_schema(topic)


@pytest.mark.parametrize("topic", ALL_TOPICS)
def test_every_property_has_a_description(topic: str) -> None:
    found = list(properties(load_schema(topic)))
    assert found
    for path, sub in found:
        assert isinstance(sub, dict) and sub.get("description"), f"{topic}: {path}"


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_inputs_are_open_and_require_the_common_fields(topic: str) -> None:
    schema = load_schema(topic)
    assert schema.get("additionalProperties", True) is not False
    assert schema["required"] == COMMON + REQUIRED[topic]


# Fields added later, present only on some records (additive: older consumers see
# the same required fields as before).
OPTIONAL_OUTPUT_FIELDS = {"segment-changes": {"model_change"}}


@pytest.mark.parametrize("topic", OUTPUT_TOPICS)
def test_outputs_are_closed_and_require_everything(topic: str) -> None:
    schema = load_schema(topic)
    assert schema["additionalProperties"] is False
    optional = OPTIONAL_OUTPUT_FIELDS.get(topic, set())
    assert set(schema["required"]) == set(schema["properties"]) - optional


@pytest.mark.parametrize("topic", ALL_TOPICS)
def test_examples_are_valid_for_jsonschema_too(topic: str) -> None:
    examples = {**INPUT_EXAMPLES, **OUTPUT_EXAMPLES}
    Draft202012Validator(load_schema(topic)).validate(examples[topic])


@pytest.mark.parametrize(
    "ts",
    ["2023-11-14T22:13:20Z", "2023-11-14T22:13:20.5+02:00", "2023-11-14T22:13:20", "2023-11-14"],
)
def test_ts_pattern_agrees_between_implementations(ts: str) -> None:
    schema = load_schema("privacy")
    event = {**INPUT_EXAMPLES["privacy"], "ts": ts}
    independent = Draft202012Validator(schema).is_valid(event)
    try:
        validate("privacy", orjson.dumps(event))
        ours = True
    except Exception:
        ours = False
    assert ours == independent
