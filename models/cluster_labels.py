"""Readable labels and reasons for clusters, derived from centroid z-scores.

A cluster's *profile* is its centroid expressed in z-scores of the population
(0 = average customer, +1 = one standard deviation above). What distinguishes a
cluster is the handful of dimensions with the largest absolute z-scores; the
label is built from those, never from simulator persona names, so it stays
truthful when the data change. Everything here is deterministic: the same
snapshot always gives the same labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from models.cluster_vector import FEATURE_NAMES

__all__ = [
    "TRAIT_THRESHOLD",
    "describe_clusters",
    "distinguishing",
    "level_phrase",
    "still_describes",
]

TRAIT_THRESHOLD = 0.5
"""A dimension characterises a cluster when ``|z| >= TRAIT_THRESHOLD``."""

_TRAIT_WORDS: dict[str, tuple[str, str]] = {
    # feature: (word when high, word when low)
    "purchase_rate": ("frequent buyers", "infrequent buyers"),
    "order_value": ("high spenders", "small baskets"),
    "browse_intensity": ("heavy browsers", "light browsers"),
    "cart_conversion": ("decisive buyers", "cart abandoners"),
    "support_load": ("support-heavy", "few tickets"),
    "escalation_share": ("escalating", "rarely escalate"),
    "sentiment": ("promoters", "detractors"),
    "dormancy": ("lapsing", "recently active"),
    "tenure": ("long-standing", "new"),
}

# Traits that read better as one phrase: (required (feature, sign)s, absorbed ones, phrase).
# Absorbed traits, when present with that sign, are covered by the phrase too.
_Trait = tuple[str, int]
_COMBINED: tuple[tuple[tuple[_Trait, ...], tuple[_Trait, ...], str], ...] = (
    (
        (("support_load", 1), ("sentiment", -1)),
        (("escalation_share", 1),),
        "support-heavy detractors",
    ),
    (
        (("browse_intensity", 1), ("purchase_rate", -1)),
        (("cart_conversion", -1),),
        "browsers who rarely buy",
    ),
    (
        (("browse_intensity", 1), ("cart_conversion", -1)),
        (("purchase_rate", -1),),
        "browsers who rarely buy",
    ),
    ((("purchase_rate", 1), ("order_value", -1)), (), "frequent small-basket buyers"),
    ((("purchase_rate", 1), ("order_value", 1)), (), "frequent high spenders"),
)


def level_phrase(feature: str, z: float) -> str:
    """Describe a z-score of one dimension in words.

    Examples
    --------
    >>> level_phrase("order_value", 1.8)
    'average order value well above average'
    >>> level_phrase("sentiment", -0.7)
    'satisfaction (NPS/CSAT) below average'
    """
    name = FEATURE_NAMES.get(feature, feature)
    if z >= 1.5:
        level = "well above average"
    elif z >= TRAIT_THRESHOLD:
        level = "above average"
    elif z <= -1.5:
        level = "well below average"
    elif z <= -TRAIT_THRESHOLD:
        level = "below average"
    else:
        level = "about average"
    return f"{name} {level}"


def distinguishing(
    profile: Mapping[str, float], limit: int = 5, threshold: float = TRAIT_THRESHOLD
) -> list[tuple[str, float]]:
    """Return the dimensions that characterise a profile, strongest first.

    Ties are broken by feature name so that the order is deterministic.

    Examples
    --------
    >>> distinguishing({"order_value": 1.2, "sentiment": -2.0, "tenure": 0.1})
    [('sentiment', -2.0), ('order_value', 1.2)]
    """
    items = [(f, float(z)) for f, z in profile.items() if abs(z) >= threshold]
    items.sort(key=lambda item: (-abs(item[1]), item[0]))
    return items[:limit]


def _label_words(traits: list[tuple[str, float]], max_words: int) -> list[str]:
    """Turn distinguishing traits into label words, strongest first."""
    strength = {f: abs(z) for f, z in traits}
    signs = {f: (1 if z > 0 else -1) for f, z in traits}
    used: set[str] = set()
    scored: list[tuple[float, int, str]] = []
    for order, (pattern, absorbed, phrase) in enumerate(_COMBINED):
        if all(signs.get(f) == s for f, s in pattern) and not any(f in used for f, _ in pattern):
            used.update(f for f, _ in pattern)
            used.update(f for f, s in absorbed if signs.get(f) == s)
            scored.append((max(strength[f] for f, _ in pattern), order, phrase))
    for order, (f, z) in enumerate(traits, start=len(_COMBINED)):
        if f in used or f not in _TRAIT_WORDS:
            continue
        used.add(f)
        scored.append((abs(z), order, _TRAIT_WORDS[f][0 if z > 0 else 1]))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [phrase for _, _, phrase in scored[:max_words]]


def describe_clusters(snapshot: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Derive a readable label and traits for every cluster of a snapshot.

    Parameters
    ----------
    snapshot
        A snapshot of :meth:`models.clustering.SegmentLearner.snapshot` (only
        ``profiles`` is read: ``{cluster_id: {feature: z-score}}``).

    Returns
    -------
    dict
        ``{cluster_id: {"label": str, "traits": [str, ...]}}``. Labels are
        unique within the snapshot; ``traits`` lists the distinguishing
        dimensions in words, strongest first.

    Examples
    --------
    >>> snap = {"profiles": {
    ...     "c0": {"order_value": 1.6, "purchase_rate": 0.9, "sentiment": 1.1},
    ...     "c1": {"browse_intensity": 1.4, "purchase_rate": -1.2, "order_value": 0.0},
    ...     "c2": {"support_load": 2.1, "sentiment": -1.5, "escalation_share": 1.0},
    ... }}
    >>> {cid: d["label"] for cid, d in describe_clusters(snap).items()}
    ... # doctest: +NORMALIZE_WHITESPACE
    {'c0': 'frequent high spenders, promoters', 'c1': 'browsers who rarely buy',
     'c2': 'support-heavy detractors'}
    >>> describe_clusters(snap)["c2"]["traits"][0]
    'support tickets well above average'
    """
    profiles: Mapping[str, Mapping[str, float]] = snapshot.get("profiles") or {}
    result: dict[str, dict[str, Any]] = {}
    for cid in sorted(profiles, key=_id_order):
        traits = distinguishing(profiles[cid], limit=4)
        words = _label_words(traits[:3], max_words=3)
        label = ", ".join(words) if words else "average customers"
        result[cid] = {
            "label": label,
            "traits": [level_phrase(f, z) for f, z in traits],
            "_words": _label_words(traits, max_words=4),
        }
    # Make labels unique: extend with a further trait, then with the id.
    seen: dict[str, list[str]] = {}
    for cid, desc in result.items():
        seen.setdefault(desc["label"], []).append(cid)
    for label, cids in seen.items():
        if len(cids) < 2:
            continue
        for cid in cids:
            words = result[cid]["_words"]
            longer = ", ".join(words) if len(words) > 3 else label
            result[cid]["label"] = longer
        labels = [result[cid]["label"] for cid in cids]
        if len(set(labels)) < len(labels):
            for cid in cids:
                result[cid]["label"] = f"{result[cid]['label']} ({cid})"
    for desc in result.values():
        del desc["_words"]
    return result


def still_describes(label: str, profile: Mapping[str, float], slack: float = 0.1) -> bool:
    """Whether every word of an existing ``label`` still holds for ``profile``.

    With ``slack`` below the trait threshold (a trait fades out at 0.4, not
    0.5), so a label does not flicker when a z-score hovers around 0.5 or
    two traits swap places.

    Examples
    --------
    >>> still_describes("high spenders, promoters", {"order_value": 0.45, "sentiment": 1.2})
    True
    >>> still_describes("high spenders, promoters", {"order_value": 0.2, "sentiment": 1.2})
    False
    >>> still_describes("average customers (c4)", {"order_value": 0.3})
    True
    """
    base = re.sub(r" \(c\d+\)$", "", label)
    if base == "average customers":
        return not distinguishing(profile, limit=1, threshold=TRAIT_THRESHOLD + slack)
    traits = distinguishing(profile, limit=len(profile), threshold=TRAIT_THRESHOLD - slack)
    words = set(_label_words(traits, max_words=len(traits) + len(_COMBINED)))
    return all(word in words for word in base.split(", "))


def _id_order(cid: str) -> tuple[int, str]:
    digits = cid[1:]
    return (int(digits), cid) if digits.isdigit() else (1 << 30, cid)
