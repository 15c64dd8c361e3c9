"""Which profile attributes a customer record may keep: an allow-list and limits.

A ``profiles`` event may carry any scalar attributes (the schema is open for
forward compatibility), so a producer can send an e-mail address, a national id
or two thousand keys. Segmenter keeps only the attributes it is configured to
use: names on the allow-list, at most ``max_attributes`` per customer, string
values of at most ``max_value_chars`` characters. Everything else is dropped
before it reaches the customer's state, and counted by reason
(:data:`REJECT_REASONS`), never by name (names are producer-controlled).

The default allow-list is the contract's demographic, geographic,
firmographic and technographic fields, the attributes documented in
``schemas/profiles.schema.json`` (a test keeps the two in sync).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_ALLOWED",
    "REJECT_REASONS",
    "AttributePolicy",
    "Screened",
    "parse_allow_list",
]

#: Attributes kept by default (the documented ones of ``profiles.schema.json``).
DEFAULT_ALLOWED: tuple[str, ...] = (
    # demographic
    "age",
    "gender",
    # geographic
    "country",
    "region",
    "city",
    # firmographic
    "company_size",
    "industry",
    # account and preferences
    "plan",
    "currency",
    "signup_ts",
    # technographic
    "device",
    "os",
    "browser",
)
#: Why an attribute was dropped (bounded: the ``reason`` label of a metric).
REJECT_REASONS: tuple[str, ...] = ("not_allowed", "too_many", "too_long")


@dataclass
class Screened:
    """The outcome of :meth:`AttributePolicy.screen` for one event."""

    kept: dict[str, Any]
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> attributes dropped
    stale: list[str] = field(default_factory=list)  # held names no longer allowed

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


@dataclass(frozen=True)
class AttributePolicy:
    """Allow-list and limits of the profile attributes kept per customer.

    Parameters
    ----------
    allowed
        Attribute names that may be kept (exact, case-sensitive).
    max_attributes
        Most attributes kept per customer; a new name beyond it is dropped
        (names already held can still be updated).
    max_value_chars
        Longest string value kept; a longer one is dropped (not truncated:
        a cut value is a wrong value).

    Examples
    --------
    >>> policy = AttributePolicy(max_attributes=3)
    >>> out = policy.screen({"country": "DE", "email": "a@b.example", "plan": "pro",
    ...                      "region": "x" * 500}, held=["age"])
    >>> out.kept
    {'country': 'DE', 'plan': 'pro'}
    >>> sorted(out.rejected.items())
    [('not_allowed', 1), ('too_long', 1)]
    >>> policy.screen({"city": "Berlin", "age": 41}, held=["age", "country", "plan"]).kept
    {'age': 41}
    >>> policy.screen({}, held=["ssn", "age"]).stale
    ['ssn']
    """

    allowed: frozenset[str] = frozenset(DEFAULT_ALLOWED)
    max_attributes: int = 32
    max_value_chars: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed", frozenset(self.allowed))
        if self.max_attributes < 1 or self.max_value_chars < 1:
            raise ValueError("max_attributes and max_value_chars must be >= 1")

    def screen(self, attributes: Mapping[str, Any], held: Iterable[str] = ()) -> Screened:
        """Split one event's ``attributes`` into those kept and those dropped.

        ``held`` are the names the customer's record already holds; those not
        allowed (any more) are listed in ``stale`` for the caller to delete.
        """
        allowed = self.allowed
        held_names = set(held)
        out = Screened({}, stale=sorted(name for name in held_names if name not in allowed))
        count = len(held_names) - len(out.stale)
        for name, value in attributes.items():
            if name not in allowed:
                out.reject("not_allowed")
            elif isinstance(value, str) and len(value) > self.max_value_chars:
                out.reject("too_long")
            elif name not in held_names and count >= self.max_attributes:
                out.reject("too_many")
            else:
                if name not in held_names:
                    held_names.add(name)
                    count += 1
                out.kept[name] = value
        return out

    def visible(self, profile: Mapping[str, Any]) -> dict[str, Any]:
        """The allowed part of a stored profile (records written before a policy change).

        >>> AttributePolicy().visible({"country": "DE", "email": "a@b.example"})
        {'country': 'DE'}
        """
        return {name: value for name, value in profile.items() if name in self.allowed}


def parse_allow_list(value: str | Iterable[str]) -> tuple[str, ...]:
    """Allowed names from a comma-separated setting.

    Names replace the default list; names written ``+name`` are added to it.

    >>> parse_allow_list("country, plan")
    ('country', 'plan')
    >>> parse_allow_list("+loyalty_tier")[-1], len(parse_allow_list("+loyalty_tier"))
    ('loyalty_tier', 14)
    >>> parse_allow_list("")
    ()
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [item.strip() for item in items if item.strip()]
    extend = [name[1:].strip() for name in names if name.startswith("+")]
    replace = [name for name in names if not name.startswith("+")]
    if extend and replace:
        raise ValueError("use either names (replacing the defaults) or +names (adding to them)")
    if extend:
        return tuple(dict.fromkeys((*DEFAULT_ALLOWED, *extend)))
    return tuple(dict.fromkeys(replace))
