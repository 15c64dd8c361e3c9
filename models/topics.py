"""Logical topic names: the one registry of which topic is which kind.

Names are without the configured prefix (``Settings.topic`` adds it). Pure
constants, so ``models/`` may import them; ``schemas`` (the schemas per topic),
``streams.topics`` (creating the topics) and every module that asks "is this
a behaviour topic?" import the sets from here instead of spelling them out.

Examples
--------
>>> set(FEATURE_TOPICS) == BEHAVIOUR_TOPICS | {"profiles"}
True
>>> set(FEATURE_TOPICS) | {"privacy"} == set(INPUT_TOPICS)
True
"""

from __future__ import annotations

__all__ = ["BEHAVIOUR_TOPICS", "FEATURE_TOPICS", "INPUT_TOPICS", "OUTPUT_TOPICS"]

INPUT_TOPICS: tuple[str, ...] = (
    "purchases",
    "browsing",
    "support",
    "feedback",
    "profiles",
    "privacy",
)
"""Logical names of the input topics that have a schema, in creation order."""

OUTPUT_TOPICS: tuple[str, ...] = (
    "segment-changes",
    "churn-risk",
    "dead-letters",
    "privacy-confirmations",
    "segment-memberships",
)
"""Logical names of the output topics that have a schema, in creation order."""

BEHAVIOUR_TOPICS: frozenset[str] = frozenset({"purchases", "browsing", "support", "feedback"})
"""Input topics of a customer's own behaviour: an event on one is activity
(churn outcomes, KPIs, experiments, the learner's training day)."""

FEATURE_TOPICS: tuple[str, ...] = ("purchases", "browsing", "support", "feedback", "profiles")
"""Input topics whose events feed the customer's features
(:func:`models.features.apply_event`): the behaviour topics and ``profiles``."""
