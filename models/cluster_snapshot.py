"""Checking a published cluster snapshot before any worker uses it.

Snapshots arrive on the ``segment-models`` topic as JSON. A record that is
malformed (a bug, another release, or someone writing to the topic) must be
refused with a clear reason, never half-applied and never allowed to raise
deep inside the worker. :func:`validate_snapshot` checks what
:class:`~models.clustering.SegmentAssigner` and the segment catalogue read:
types, sizes, finite numbers and non-negative spreads.

Examples
--------
>>> snap = {"version": 2, "features": ["a"], "mean": {"a": 0.0}, "std": {"a": 1.0},
...         "profiles": {"c0": {"a": -1.0}, "c1": {"a": 1.0}}, "labels": {"c0": "low a"}}
>>> validate_snapshot(snap) is snap
True
>>> try:
...     validate_snapshot({"profiles": {"c0": {"a": float("nan")}}})
... except SnapshotError as exc:
...     print(exc)
profiles['c0']['a'] is not a finite number
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_CLUSTERS", "MAX_FEATURES", "SnapshotError", "validate_snapshot"]

MAX_CLUSTERS = 64
"""Most clusters a snapshot may hold."""
MAX_FEATURES = 64
"""Most clustering dimensions a snapshot may name."""
_MAX_ID = 200
_MAX_EVENTS = 1000


class SnapshotError(ValueError):
    """A cluster snapshot is malformed; the message says where."""


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SnapshotError(f"{where} is not a finite number")
    return float(value)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID:
        raise SnapshotError(f"{where} must be a non-empty string of at most {_MAX_ID} characters")
    return value


def _numbers(value: Any, where: str, limit: int = MAX_FEATURES) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SnapshotError(f"{where} must be an object")
    if len(value) > limit:
        raise SnapshotError(f"{where} has {len(value)} entries (at most {limit})")
    for key, number in value.items():
        _name(key, f"a key of {where}")
        _finite(number, f"{where}[{key!r}]")
    return value


def validate_snapshot(snapshot: Any) -> dict[str, Any]:
    """Return ``snapshot`` if it is a well-formed snapshot, else raise :class:`SnapshotError`."""
    if not isinstance(snapshot, dict):
        raise SnapshotError("the snapshot must be an object")
    features = snapshot.get("features")
    if features is not None:
        if not isinstance(features, list) or len(features) > MAX_FEATURES:
            raise SnapshotError(f"features must be a list of at most {MAX_FEATURES} names")
        for i, name in enumerate(features):
            _name(name, f"features[{i}]")
        if len(set(features)) != len(features):
            raise SnapshotError("features names repeat")
    for field in ("mean", "std"):
        if snapshot.get(field) is not None:
            _numbers(snapshot[field], field)
    for name, spread in (snapshot.get("std") or {}).items():
        if spread < 0:
            raise SnapshotError(f"std[{name!r}] is negative")
    for field in ("profiles", "centroids"):
        clusters = snapshot.get(field)
        if clusters is None:
            continue
        if not isinstance(clusters, dict) or len(clusters) > MAX_CLUSTERS:
            raise SnapshotError(f"{field} must be an object of at most {MAX_CLUSTERS} clusters")
        for cid, profile in clusters.items():
            _name(cid, f"a cluster id of {field}")
            _numbers(profile, f"{field}[{cid!r}]")
    labels = snapshot.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            raise SnapshotError("labels must be an object")
        for cid, label in labels.items():
            _name(cid, "a cluster id of labels")
            if not isinstance(label, str):
                raise SnapshotError(f"labels[{cid!r}] must be a string")
    for field in ("version", "k", "samples", "next_id"):
        value = snapshot.get(field)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise SnapshotError(f"{field} must be a non-negative integer")
    if snapshot.get("model_version") is not None:
        _name(snapshot["model_version"], "model_version")
    events = snapshot.get("events")
    if events is not None:
        if not isinstance(events, list) or len(events) > _MAX_EVENTS:
            raise SnapshotError(f"events must be a list of at most {_MAX_EVENTS} objects")
        for i, event in enumerate(events):
            if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
                raise SnapshotError(f"events[{i}] must be an object with a kind")
    return snapshot
