"""models.profile_policy: the allow-list and limits of profile attributes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.profile_policy import DEFAULT_ALLOWED, AttributePolicy, parse_allow_list

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "profiles.schema.json"


def test_the_default_allow_list_is_the_documented_attributes() -> None:
    documented = json.loads(SCHEMA.read_text())["properties"]["attributes"]["properties"]
    assert set(DEFAULT_ALLOWED) == set(documented)


def test_personal_data_and_floods_are_dropped_and_counted() -> None:
    attributes = {"email": "a@b.example", "ssn": "078-05-1120", "country": "DE"}
    attributes |= {f"k{i}": i for i in range(2000)}
    out = AttributePolicy().screen(attributes)
    assert out.kept == {"country": "DE"}
    assert out.rejected == {"not_allowed": 2002}


def test_the_count_limit_is_per_customer_and_updates_are_allowed() -> None:
    policy = AttributePolicy(max_attributes=2)
    first = policy.screen({"country": "DE", "plan": "pro", "age": 40})
    assert first.kept == {"country": "DE", "plan": "pro"} and first.rejected == {"too_many": 1}
    later = policy.screen({"plan": "free", "age": 41}, held=first.kept)
    assert later.kept == {"plan": "free"} and later.rejected == {"too_many": 1}


def test_long_strings_are_dropped_not_cut() -> None:
    out = AttributePolicy(max_value_chars=5).screen(
        {"city": "Berlin", "plan": "pro", "age": 123456}
    )
    assert out.kept == {"plan": "pro", "age": 123456}
    assert out.rejected == {"too_long": 1}


def test_attributes_no_longer_allowed_are_reported_stale() -> None:
    policy = AttributePolicy(frozenset({"country"}))
    out = policy.screen({"country": "FR"}, held={"country": 1, "email": 1, "plan": 1})
    assert out.stale == ["email", "plan"] and out.kept == {"country": "FR"}
    assert policy.visible({"country": "FR", "email": "x"}) == {"country": "FR"}


def test_allow_list_setting() -> None:
    assert parse_allow_list(" country ,plan,,") == ("country", "plan")
    assert parse_allow_list("+tier,+country") == (*DEFAULT_ALLOWED, "tier")
    with pytest.raises(ValueError, match="either"):
        parse_allow_list("country,+tier")
    with pytest.raises(ValueError):
        AttributePolicy(max_attributes=0)
