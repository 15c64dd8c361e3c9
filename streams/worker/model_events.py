"""Announce changes of the cluster model on ``segment-changes``.

When the learner's model changes structure (its first clusters, a split, a
merge) or a cluster's label changes, downstream systems keyed on cluster ids
(campaigns, audiences) must hear about it, not discover renumbered segments.
Each change becomes one **model event** on ``segment-changes``: the usual
fields, so it validates like any segment change, plus the marker field
``model_change``; its ``customer_id`` (and message key) is :data:`MODEL_KEY`.

====================  ==========================================================
``model_change.kind``  ``previous`` -> ``current``
====================  ==========================================================
``init``               ``null`` -> each new cluster
``split``              the parent -> each cluster split off it (the parent goes on)
``merge``              each retired cluster -> the cluster that absorbed it
``relabel``            the cluster -> itself, with the new ``label``
====================  ==========================================================

``seq`` is the model version (increasing), ``ts`` the stream time the model
is as of, ``model_version`` the version that made the change, and
``model_change`` holds the whole change (``from``, ``into``, ``labels`` of
the clusters involved, ``previous_label`` for a relabel). Customers moved by
the change get their own segment-change events as they are placed again.
Pure functions; the learner's worker sends the events (``streams.worker.app``).

Examples
--------
>>> snap = {"version": 3, "model_version": "km-3", "as_of_ms": 86_400_000,
...         "labels": {"c0": "frequent buyers", "c2": "lapsing"},
...         "events": [{"kind": "merge", "from": ["c0", "c1"], "into": "c0", "version": 3}]}
>>> [event] = model_change_events(snap, since_version=2)
>>> event["customer_id"], event["previous"], event["current"], event["seq"]
('*', 'c1', 'c0', 3)
>>> event["model_change"]["kind"], event["reasons"][0]
('merge', 'cluster c1 merged into c0 (frequent buyers)')
>>> model_change_events(snap, since_version=3)
[]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from models.eventtime import format_ts

__all__ = ["MODEL_KEY", "is_model_event", "model_change_events", "model_event_breaks"]

MODEL_KEY = "*"
"""``customer_id`` and message key of model events (a marker, not a customer)."""


def is_model_event(event: Mapping[str, Any]) -> bool:
    """Whether a ``segment-changes`` record announces a model change (not a customer's).

    >>> is_model_event({"customer_id": "*", "model_change": {"kind": "split"}})
    True
    >>> is_model_event({"customer_id": "c1", "segment_type": "cluster"})
    False
    """
    return "model_change" in event


def _event_id(*parts: object) -> str:
    text = "\x1f".join(str(p) for p in ("model", *parts))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def model_change_events(
    snapshot: Mapping[str, Any], since_version: int | None
) -> list[dict[str, Any]]:
    """The model events of ``snapshot``'s changes newer than ``since_version``.

    ``since_version`` is the version of the model last announced (None: every
    change the snapshot still lists). Ids are deterministic, so announcing a
    change twice (a learner restarted before recording it) repeats the id.
    """
    labels: Mapping[str, str] = snapshot.get("labels") or {}
    as_of = snapshot.get("as_of_ms")
    out: list[dict[str, Any]] = []
    for change in snapshot.get("events") or []:
        version = change.get("version")
        if not isinstance(version, int) or (since_version is not None and version <= since_version):
            continue
        kind = change.get("kind")
        when = change.get("as_of_ms", as_of)
        for previous, current, reason in _transitions(change, labels):
            involved = [c for c in (previous, current) if c is not None]
            body: dict[str, Any] = {
                "kind": kind,
                "from": change.get("id") if kind == "relabel" else change.get("from"),
                "into": change.get("ids")
                if kind == "init"
                else change.get("id")
                if kind == "relabel"
                else change.get("into"),
                "labels": {c: labels.get(c, "") for c in involved},
            }
            if kind == "relabel":
                body["previous_label"] = change.get("from_label", "")
            out.append(
                {
                    "event_id": _event_id(version, kind, previous, current),
                    "customer_id": MODEL_KEY,
                    "seq": max(1, version),
                    "ts": format_ts(int(when)) if isinstance(when, int) else format_ts(0),
                    "segment_type": "cluster",
                    "previous": previous,
                    "current": current,
                    "label": labels.get(current or previous or "", ""),
                    "reasons": [reason],
                    "model_version": f"km-{version}",
                    # (about the model, not a customer's first assignment)
                    "initial": False,
                    "cause": f"model:km-{version}",
                    # (a model event puts no customer into an experiment's segment)
                    "experiments": [],
                    "model_change": body,
                }
            )
    return out


def _transitions(
    change: Mapping[str, Any], labels: Mapping[str, str]
) -> list[tuple[str | None, str | None, str]]:
    """(previous, current, reason) for every cluster id a change concerns."""
    kind = change.get("kind")

    def named(cid: str) -> str:
        return f"{cid} ({labels[cid]})" if labels.get(cid) else cid

    if kind == "init":
        return [(None, c, f"new cluster {named(c)}") for c in change.get("ids") or []]
    if kind == "split":
        parent = change.get("from")
        return [
            (parent, c, f"cluster {named(c)} split off {parent}")
            for c in change.get("into") or []
            if c != parent
        ]
    if kind == "merge":
        survivor = str(change.get("into"))
        return [
            (c, survivor, f"cluster {c} merged into {named(survivor)}")
            for c in change.get("from") or []
            if c != survivor
        ]
    if kind == "relabel":
        cid = change.get("id")
        return [
            (
                cid,
                cid,
                f"cluster {cid} relabelled from '{change.get('from_label', '')}' "
                f"to '{change.get('label', '')}'",
            )
        ]
    return []


def model_event_breaks(events: list[Mapping[str, Any]]) -> list[str]:
    """Where a consumer following the model events would lose track of a cluster id.

    Model events are not one chain like a customer's changes: each says where
    one cluster id goes, and the changes of one model version share a ``seq``
    (an ``init`` of five clusters is five events from ``null``). Their rule:
    replayed by ``seq`` (repeated event ids dropped), every id an event
    starts from (the parent of a split, a merged or relabelled cluster) was
    announced before by an ``init`` or a ``split`` (of that version or an
    earlier one) and not merged away since, and a merge ends in a live
    cluster. A lost announcement breaks it; one repeated after a learner
    restart (same ``event_id``) does not.

    >>> init = [{"event_id": f"i{c}", "seq": 1, "previous": None, "current": c,
    ...          "model_change": {"kind": "init"}} for c in ("c0", "c1")]
    >>> merge = {"event_id": "m", "seq": 5, "previous": "c1", "current": "c0",
    ...          "model_change": {"kind": "merge"}}
    >>> model_event_breaks([*init, merge, merge])
    []
    >>> model_event_breaks([init[0], merge])
    ['seq 5: merge from c1, which was never announced or is retired']
    """
    unique: dict[str, Mapping[str, Any]] = {}
    for event in events:
        unique.setdefault(str(event["event_id"]), event)
    live: set[str] = set()
    breaks: list[str] = []
    rank = {"init": 0, "split": 1, "merge": 2, "relabel": 3}  # (one version's changes)

    def kind_of(event: Mapping[str, Any]) -> str:
        return str((event.get("model_change") or {}).get("kind"))

    for event in sorted(unique.values(), key=lambda e: (e["seq"], rank.get(kind_of(e), 4))):
        kind = kind_of(event)
        previous, current = event.get("previous"), event.get("current")
        if kind != "init" and previous not in live:
            breaks.append(
                f"seq {event['seq']}: {kind} from {previous}, which was never announced "
                "or is retired"
            )
        if kind in ("init", "split") and current is not None:
            live.add(current)
        elif kind == "merge":
            live.discard(previous)
            if current not in live:
                breaks.append(f"seq {event['seq']}: merge into {current}, which is not live")
    return breaks
