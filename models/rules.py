"""Rule segments: lifecycle, value tier, NPS category and user-defined rules.

Every segment type is a small state machine: :meth:`RuleEngine.assign` takes the
customer's flat feature dict (``models.features.read_features``), the previous
assignment of every type (``{"current": id | None, "since_ms": int}``) and the
stream clock, and returns one :class:`Assignment` per type. Two mechanisms keep
segments from flapping when a feature wobbles around a threshold:

* **hysteresis** on the value tiers: moving *up* needs the entry threshold,
  moving *down* needs to fall below ``threshold * (1 - value_margin)``;
* **minimum dwell**: a change to a *weaker* (or equally strong) segment is
  held until the customer has spent ``min_dwell_days`` of event time in the
  current one. A change to a *stronger* segment is always immediate. Strength:
  lifecycle ``new``/``active``/``reactivated`` > ``prospect`` > ``at_risk`` >
  ``lapsed``; value ``top`` > ``high`` > ``mid`` > ``low`` > ``none``; NPS
  ``promoter`` > ``passive`` > ``detractor``; user rules: a case listed earlier
  is stronger, the default is weakest.

The full user documentation is ``docs/segments.md``.

Examples
--------
>>> engine = RuleEngine(RulesConfig())
>>> day = 86_400_000
>>> features = {"orders": 3, "frequency": 2, "recency": 20, "T": 150,
...             "days_since_last_purchase": 130, "revenue_90d": 0.0,
...             "nps_category": "promoter", "nps_last": 9}
>>> out = engine.assign(features, {}, clock_ms=200 * day)
>>> out["lifecycle"].current, out["lifecycle"].label
('lapsed', 'Lapsed customer — no purchase for 130 days')
>>> out["lifecycle"].reasons
['no purchase for 130 days (threshold 120)']
>>> out["value"].current, out["nps"].current
('none', 'promoter')
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from models.cluster_config import ClusterConfig, parse_cluster_config
from models.conditions import Condition, ConditionError, compile_condition
from models.eventtime import MS_PER_DAY, day_of

__all__ = [
    "BUILTIN_TYPES",
    "FEATURE_NAMES",
    "FLAP_WINDOW_MS",
    "LIFECYCLE_SEGMENTS",
    "NPS_SEGMENTS",
    "VALUE_TIERS",
    "Assignment",
    "RuleCase",
    "RuleEngine",
    "RulesConfig",
    "RulesConfigError",
    "UserRule",
    "is_flap",
    "load_rules",
    "parse_rules",
]

#: Segment types computed by Segmenter itself; user rules may not use these names.
BUILTIN_TYPES = frozenset({"cluster", "lifecycle", "value", "nps"})

#: Feature names a condition may use (``profile`` fields are open-ended).
FEATURE_NAMES: tuple[str, ...] = (
    "orders", "revenue", "items", "first_purchase_ts", "last_purchase_ts", "frequency",
    "recency", "T", "monetary_value", "avg_order_value", "days_since_last_purchase",
    "orders_7d", "orders_30d", "orders_90d", "revenue_7d", "revenue_30d", "revenue_90d",
    "distinct_categories", "top_category", "category_share", "browsing_events", "sessions",
    "sessions_30d", "product_views", "product_views_30d", "searches", "cart_adds",
    "cart_adds_30d", "cart_removes", "checkout_starts", "wishlist_adds",
    "cart_abandonment_rate", "view_to_purchase_rate", "top_platform", "tickets",
    "open_tickets", "tickets_30d", "tickets_90d", "escalations", "escalations_90d",
    "reopened", "avg_resolution_days", "urgent_tickets", "nps_last", "nps_category",
    "nps_count", "nps_avg", "nps_trend", "csat_avg", "csat_count", "review_avg",
    "review_count", "last_event_ts", "days_since_last_event", "events_7d", "events_30d",
    "events_90d", "active_days_30d", "profile",
)  # fmt: skip

LIFECYCLE_SEGMENTS = ("new", "active", "reactivated", "prospect", "at_risk", "lapsed")
VALUE_TIERS = ("none", "low", "mid", "high", "top")
NPS_SEGMENTS = ("promoter", "passive", "detractor")

_LIFECYCLE_LABELS = {
    "new": "New customer",
    "active": "Active customer",
    "reactivated": "Reactivated customer",
    "prospect": "Prospect",
    "at_risk": "At-risk customer",
    "lapsed": "Lapsed customer",
}
_LIFECYCLE_RANK: dict[str | None, int] = {
    None: -1,
    "new": 3,
    "active": 3,
    "reactivated": 3,
    "prospect": 2,
    "at_risk": 1,
    "lapsed": 0,
}
_VALUE_LABELS = {
    "none": "No recent value",
    "low": "Low value",
    "mid": "Mid value",
    "high": "High value",
    "top": "Top value",
}
_NPS_LABELS = {"promoter": "Promoter", "passive": "Passive", "detractor": "Detractor"}
_NPS_RANK: dict[str | None, int] = {"promoter": 2, "passive": 1, "detractor": 0, None: -1}
_VALUE_RANK: dict[str | None, int] = {tier: i for i, tier in enumerate(VALUE_TIERS)}
_VALUE_RANK[None] = -1

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z", re.ASCII)
_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z", re.ASCII)


class RulesConfigError(ValueError):
    """The rule configuration (YAML file or :class:`RulesConfig`) is invalid."""


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class RuleCase:
    """One case of a user rule: segment ``id`` when ``when`` is true."""

    id: str
    label: str
    when: Condition


@dataclass(frozen=True)
class UserRule:
    """A user-defined rule segment type (one entry of ``segments.yaml``).

    The first case whose condition is true wins; otherwise ``default`` (a
    segment id or ``None`` for "no segment").
    """

    name: str
    cases: tuple[RuleCase, ...]
    description: str = ""
    default: str | None = None
    default_label: str | None = None
    min_dwell_days: float = 0

    def label_of(self, segment: str | None) -> str:
        """Human-readable label of one of this rule's segment ids."""
        for case in self.cases:
            if case.id == segment:
                return case.label
        if segment is None:
            return f"No {self.name} segment"
        if segment == self.default and self.default_label:
            return self.default_label
        return _humanise(segment)


@dataclass(frozen=True)
class RulesConfig:
    """Every threshold of the built-in rule segments, plus the user rules.

    Durations are whole days of event time; money is in the unit of ``amount``.

    Parameters
    ----------
    new_days
        ``new``: first purchase at most this many days ago and no repeat purchase.
    at_risk_min_days, at_risk_factor
        ``at_risk``: no purchase for more than
        ``max(at_risk_min_days, at_risk_factor * recency / frequency)`` days.
    lapsed_days
        ``lapsed``: no purchase (or, for prospects, no activity) for more than
        this many days.
    reactivated_days
        How long a customer who bought again after ``at_risk``/``lapsed`` stays
        ``reactivated`` before becoming ``active``.
    lifecycle_min_dwell_days, value_min_dwell_days, nps_min_dwell_days
        Minimum dwell per built-in type (see module docstring).
    value_feature
        Feature the value tier is computed from (default: 90-day revenue).
    value_low, value_mid, value_high, value_top
        Entry thresholds of the value tiers (``>=``); below ``value_low`` is ``none``.
    value_margin
        Hysteresis: leave a tier only below ``threshold * (1 - value_margin)``.
    user_rules
        User-defined rule types, in evaluation and catalogue order.
    clusters
        Bounds on the number of behavioural clusters (the YAML's ``clusters``
        section, :mod:`models.cluster_config`).

    Examples
    --------
    >>> RulesConfig(lapsed_days=90).lapsed_days
    90
    >>> try:
    ...     RulesConfig(value_mid=10, value_low=20)
    ... except RulesConfigError as exc:
    ...     print(str(exc)[:59])
    value thresholds must increase: value_low=20 < value_mid=10
    """

    new_days: int = 30
    at_risk_min_days: int = 45
    at_risk_factor: float = 3.0
    lapsed_days: int = 120
    reactivated_days: int = 30
    lifecycle_min_dwell_days: float = 0
    value_feature: str = "revenue_90d"
    value_low: float = 0.01
    value_mid: float = 250.0
    value_high: float = 1000.0
    value_top: float = 5000.0
    value_margin: float = 0.15
    value_min_dwell_days: float = 7
    nps_min_dwell_days: float = 0
    user_rules: tuple[UserRule, ...] = field(default_factory=tuple)
    # Not in repr: the rules' version (streams.worker.app.rules_version) is about rule segments.
    clusters: ClusterConfig = field(default_factory=ClusterConfig, repr=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name in ("value_feature", "user_rules", "clusters"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RulesConfigError(f"{f.name} must be a number, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise RulesConfigError(f"{f.name} must be a finite number >= 0, not {value!r}")
        if not self.value_margin < 1:
            raise RulesConfigError(f"value_margin must be in [0, 1), not {self.value_margin!r}")
        tiers = (self.value_low, self.value_mid, self.value_high, self.value_top)
        if not (0 < tiers[0] < tiers[1] < tiers[2] < tiers[3]):
            raise RulesConfigError(
                "value thresholds must increase: "
                f"value_low={tiers[0]} < value_mid={tiers[1]} < "
                f"value_high={tiers[2]} < value_top={tiers[3]}"
            )
        if self.at_risk_min_days >= self.lapsed_days:
            raise RulesConfigError(
                f"at_risk_min_days ({self.at_risk_min_days}) must be below "
                f"lapsed_days ({self.lapsed_days})"
            )
        object.__setattr__(self, "user_rules", tuple(self.user_rules))
        names = [rule.name for rule in self.user_rules]
        for name in names:
            if name in BUILTIN_TYPES or names.count(name) > 1:
                raise RulesConfigError(f"rule name {name!r} is a built-in type or used twice")

    @property
    def value_thresholds(self) -> tuple[float, float, float, float, float]:
        """Entry thresholds of ``VALUE_TIERS`` (``none`` enters at 0)."""
        return (0.0, self.value_low, self.value_mid, self.value_high, self.value_top)


def _humanise(segment_id: str) -> str:
    text = segment_id.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------- loading


def load_rules(path: str | Path, known_features: Collection[str] = FEATURE_NAMES) -> RulesConfig:
    """Load a rules YAML file into a validated :class:`RulesConfig`.

    The file is either a list of user rules, or a mapping with optional keys
    ``settings`` (overrides of :class:`RulesConfig` thresholds),
    ``segments`` (the list of user rules) and ``clusters`` (bounds on the
    number of behavioural clusters). See ``docs/segments.md``.

    Raises
    ------
    RulesConfigError
        Naming the file, the rule and (for conditions) the column and a
        spelling suggestion.

    Examples
    --------
    >>> import tempfile, os
    >>> text = '''
    ... - name: big_spenders
    ...   description: spent a lot recently
    ...   cases:
    ...     - {id: big, label: Big spender, when: "revenue_30d >= 500"}
    ...   default: null
    ... '''
    >>> with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
    ...     _ = fh.write(text)
    >>> config = load_rules(fh.name)
    >>> os.unlink(fh.name)
    >>> [rule.name for rule in config.user_rules]
    ['big_spenders']
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesConfigError(f"{path}: cannot read rules file: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RulesConfigError(f"{path}: invalid YAML: {exc}") from exc
    return parse_rules(data, source=str(path), known_features=known_features)


def parse_rules(
    data: Any, source: str = "<rules>", known_features: Collection[str] = FEATURE_NAMES
) -> RulesConfig:
    """Validate already-parsed YAML data (list or mapping) into a :class:`RulesConfig`.

    Examples
    --------
    >>> config = parse_rules({"settings": {"lapsed_days": 90}, "segments": [
    ...     {"name": "b2b", "cases": [{"id": "b2b", "label": "Business",
    ...                                "when": "profile.company_size is not null"}]}]})
    >>> config.lapsed_days, config.user_rules[0].cases[0].id
    (90, 'b2b')
    >>> try:
    ...     parse_rules([{"name": "x", "cases": [{"id": "a", "when": "revenu > 1"}]}])
    ... except RulesConfigError as exc:
    ...     print(exc)
    <rules>: rule 'x': case 'a': unknown feature 'revenu' at column 1; did you mean 'revenue'?
      revenu > 1
      ^
    """
    known = frozenset(known_features)
    settings: dict[str, Any] = {}
    clusters = ClusterConfig()
    if data is None:
        items: list[Any] = []
    elif isinstance(data, list):
        items = data
    elif isinstance(data, dict):
        # (`experiments` is read by models.experiments.load_segments_config)
        unknown = set(data) - {"settings", "segments", "clusters", "experiments"}
        if unknown:
            raise RulesConfigError(
                f"{source}: unknown top-level key(s) {sorted(map(str, unknown))}; "
                "expected 'settings', 'segments', 'clusters' and/or 'experiments'"
            )
        try:
            clusters = parse_cluster_config(data.get("clusters"), f"{source}: clusters")
        except ValueError as exc:
            raise RulesConfigError(str(exc)) from exc
        raw_settings = data.get("settings") or {}
        if not isinstance(raw_settings, dict):
            raise RulesConfigError(f"{source}: 'settings' must be a mapping")
        allowed = {f.name for f in fields(RulesConfig)} - {"user_rules", "clusters"}
        for key, value in raw_settings.items():
            if key not in allowed:
                raise RulesConfigError(
                    f"{source}: unknown setting {key!r}; known: {', '.join(sorted(allowed))}"
                )
            settings[key] = value
        items = data.get("segments") or []
        if not isinstance(items, list):
            raise RulesConfigError(f"{source}: 'segments' must be a list")
    else:
        raise RulesConfigError(f"{source}: expected a list of rules or a mapping")

    rules: list[UserRule] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        rule = _parse_rule(item, index, source, known)
        if rule.name in seen:
            raise RulesConfigError(f"{source}: rule {rule.name!r}: name used twice")
        seen.add(rule.name)
        rules.append(rule)
    try:
        return RulesConfig(**settings, user_rules=tuple(rules), clusters=clusters)
    except (TypeError, RulesConfigError) as exc:
        raise RulesConfigError(f"{source}: settings: {exc}") from exc


def _parse_rule(item: Any, index: int, source: str, known: frozenset[str]) -> UserRule:
    where = f"{source}: rule #{index + 1}"
    if not isinstance(item, dict):
        raise RulesConfigError(f"{where}: expected a mapping with name, cases, default")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RulesConfigError(f"{where}: name {name!r} must be an identifier ([A-Za-z_][\\w]*)")
    where = f"{source}: rule {name!r}"
    if name.lower() in BUILTIN_TYPES:
        raise RulesConfigError(
            f"{where}: name clashes with a built-in segment type "
            f"({', '.join(sorted(BUILTIN_TYPES))})"
        )
    allowed = {"name", "description", "cases", "default", "default_label", "min_dwell_days"}
    unknown = set(item) - allowed
    if unknown:
        raise RulesConfigError(
            f"{where}: unknown key(s) {sorted(map(str, unknown))}; allowed: {sorted(allowed)}"
        )
    description = item.get("description") or ""
    if not isinstance(description, str):
        raise RulesConfigError(f"{where}: description must be a string")
    raw_cases = item.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise RulesConfigError(f"{where}: cases must be a non-empty list")
    cases: list[RuleCase] = []
    ids: set[str] = set()
    for case_index, raw in enumerate(raw_cases):
        if not isinstance(raw, dict):
            raise RulesConfigError(f"{where}: case #{case_index + 1}: expected a mapping")
        extra = set(raw) - {"id", "label", "when"}
        if extra:
            raise RulesConfigError(
                f"{where}: case #{case_index + 1}: unknown key(s) {sorted(map(str, extra))}"
            )
        case_id = raw.get("id")
        if not isinstance(case_id, str) or not _ID_RE.match(case_id):
            raise RulesConfigError(
                f"{where}: case #{case_index + 1}: id {case_id!r} must be a non-empty "
                "string of letters, digits, '_', '-', '.'"
            )
        if case_id in ids:
            raise RulesConfigError(f"{where}: case id {case_id!r} used twice")
        ids.add(case_id)
        label = raw.get("label", _humanise(case_id))
        if not isinstance(label, str) or not label:
            raise RulesConfigError(f"{where}: case {case_id!r}: label must be a string")
        when = raw.get("when")
        if isinstance(when, bool):  # YAML turns a bare `true` into a bool
            when = "true" if when else "false"
        if not isinstance(when, str):
            raise RulesConfigError(f"{where}: case {case_id!r}: 'when' must be a string")
        try:
            condition = compile_condition(when, known_features=known)
        except ConditionError as exc:
            raise RulesConfigError(f"{where}: case {case_id!r}: {exc}") from exc
        cases.append(RuleCase(case_id, label, condition))
    default = item.get("default")
    if default is not None and (not isinstance(default, str) or not _ID_RE.match(default)):
        raise RulesConfigError(f"{where}: default {default!r} must be a segment id or null")
    default_label = item.get("default_label")
    if default_label is not None and not isinstance(default_label, str):
        raise RulesConfigError(f"{where}: default_label must be a string")
    dwell = item.get("min_dwell_days", 0)
    if dwell is None:
        dwell = 0
    if isinstance(dwell, bool) or not isinstance(dwell, int | float) or not dwell >= 0:
        raise RulesConfigError(f"{where}: min_dwell_days must be a number >= 0, not {dwell!r}")
    return UserRule(
        name=name,
        cases=tuple(cases),
        description=description,
        default=default,
        default_label=default_label,
        min_dwell_days=dwell,
    )


# --------------------------------------------------------------------------- engine


@dataclass
class Assignment:
    """The segment of one type for one customer, as decided now.

    Attributes
    ----------
    segment_type
        ``lifecycle``, ``value``, ``nps`` or a user rule's name.
    current
        Segment id, or ``None`` when the customer has no segment of this type.
    label
        Human-readable, e.g. ``"Lapsed customer — no purchase for 130 days"``.
    reasons
        The features that decided it, in words.
    changed
        ``current != previous``.
    previous
        The previous segment id (``None`` if none).
    since_ms
        Event time the customer entered ``current`` (``clock_ms`` on a change).
    """

    segment_type: str
    current: str | None
    label: str
    reasons: list[str]
    changed: bool
    previous: str | None = None
    since_ms: int = 0

    def state(self) -> dict[str, Any]:
        """What to store and pass back as ``previous[segment_type]`` next time."""
        return {"current": self.current, "since_ms": self.since_ms}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _days_since(features: Mapping[str, Any], key: str, ts_key: str, clock_ms: int) -> int | None:
    days = _num(features.get(key))
    if days is not None:
        return int(days)
    ts = features.get(ts_key)
    if isinstance(ts, int) and not isinstance(ts, bool):
        return day_of(clock_ms) - day_of(ts)
    return None


def _fmt_money(value: float) -> str:
    return f"{value:,.2f}"


def _fmt_num(value: float) -> str:
    return f"{value:g}"


class RuleEngine:
    """Assign rule segments from features, with hysteresis and minimum dwell.

    Parameters
    ----------
    config
        Thresholds and user rules (:class:`RulesConfig`, e.g. from :func:`load_rules`).

    Examples
    --------
    >>> engine = RuleEngine(RulesConfig())
    >>> day = 86_400_000
    >>> prev = {"value": {"current": "high", "since_ms": 0}}
    >>> a = engine.assign({"revenue_90d": 900.0}, prev, clock_ms=30 * day)["value"]
    >>> a.current, a.changed      # 900 >= 1000 * 0.85: hysteresis keeps "high"
    ('high', False)
    >>> a = engine.assign({"revenue_90d": 800.0}, prev, clock_ms=30 * day)["value"]
    >>> a.current, a.changed, a.label
    ('mid', True, 'Mid value — 90-day revenue 800.00')
    """

    def __init__(self, config: RulesConfig | None = None) -> None:
        self.config = config or RulesConfig()
        self._user_ranks: dict[str, dict[str | None, int]] = {}
        for rule in self.config.user_rules:
            n = len(rule.cases)
            ranks: dict[str | None, int] = {rule.default: 0}
            ranks.update({case.id: n - i for i, case in enumerate(rule.cases)})
            ranks[None] = -1
            self._user_ranks[rule.name] = ranks
        self._type_table: list[tuple[Any, ...]] | None = None

    # ---------------------------------------------------------------- public

    def assign(
        self,
        features: Mapping[str, Any],
        previous: Mapping[str, Mapping[str, Any]],
        clock_ms: int,
    ) -> dict[str, Assignment]:
        """Return ``{segment_type: Assignment}`` for every rule segment type.

        Parameters
        ----------
        features
            The flat feature dict as of ``clock_ms``.
        previous
            ``{segment_type: {"current": id | None, "since_ms": int}}`` from the
            last call (missing types are treated as "no segment yet").
        clock_ms
            The stream clock (event time, epoch ms).
        """
        out: dict[str, Assignment] = {}
        for seg_type, decide, words, dwell, rank, label_of in self._types:
            prev_state = previous.get(seg_type)
            proposed, ctx = decide(features, prev_state, clock_ms)
            label, reasons = words(proposed, ctx, features, prev_state, clock_ms)
            out[seg_type] = self._settle(
                seg_type, proposed, label, reasons, prev_state, clock_ms, dwell, rank, label_of
            )
        return out

    def changes(
        self,
        features: Mapping[str, Any],
        previous: Mapping[str, Mapping[str, Any]],
        clock_ms: int,
    ) -> list[Assignment]:
        """The assignments of :meth:`assign` whose segment changed, in type order.

        The same decisions, labels and reasons, but the words (labels and
        reasons, most of an assignment's cost) are only built for the types
        that change: most evaluations change nothing.

        Examples
        --------
        >>> engine = RuleEngine(RulesConfig())
        >>> prev = {"value": {"current": "high", "since_ms": 0}}
        >>> engine.changes({"revenue_90d": 900.0}, prev, clock_ms=30 * 86_400_000)
        []
        >>> [(a.segment_type, a.current) for a in engine.changes(
        ...     {"revenue_90d": 800.0}, prev, 30 * 86_400_000)]
        [('value', 'mid')]
        """
        out: list[Assignment] = []
        for seg_type, decide, words, dwell, rank, label_of in self._types:
            prev_state = previous.get(seg_type)
            proposed, ctx = decide(features, prev_state, clock_ms)
            prev = prev_state.get("current") if prev_state else None
            if proposed == prev or self._held(proposed, prev_state, clock_ms, dwell, rank):
                continue  # unchanged, or held by the minimum dwell
            label, reasons = words(proposed, ctx, features, prev_state, clock_ms)
            out.append(
                self._settle(
                    seg_type, proposed, label, reasons, prev_state, clock_ms, dwell, rank, label_of
                )
            )
        return out

    def segment_catalogue(self) -> list[dict[str, Any]]:
        """Describe every rule segment: type, id, label and definition text.

        Examples
        --------
        >>> cat = RuleEngine().segment_catalogue()
        >>> [(e["type"], e["id"]) for e in cat][:3]
        [('lifecycle', 'new'), ('lifecycle', 'active'), ('lifecycle', 'reactivated')]
        >>> print(next(e["definition"] for e in cat if e["id"] == "at_risk"))
        no purchase for more than max(45, 3 x mean days between purchases) days
        """
        c = self.config
        risk = (
            f"no purchase for more than max({c.at_risk_min_days}, "
            f"{_fmt_num(c.at_risk_factor)} x mean days between purchases) days"
        )
        lifecycle_defs = {
            "new": f"first purchase within the last {c.new_days} days, no repeat purchase yet",
            "active": "purchasing customer who is not new, reactivated, at risk or lapsed",
            "reactivated": (
                f"bought again after being at_risk or lapsed; for {c.reactivated_days} days"
            ),
            "prospect": "has events (browsing, support, feedback) but no purchase",
            "at_risk": risk,
            "lapsed": (
                f"no purchase for more than {c.lapsed_days} days, or (without purchases) "
                f"no activity for more than {c.lapsed_days} days"
            ),
        }
        catalogue: list[dict[str, Any]] = []
        for seg in LIFECYCLE_SEGMENTS:
            catalogue.append(
                {
                    "type": "lifecycle",
                    "id": seg,
                    "label": _LIFECYCLE_LABELS[seg],
                    "definition": lifecycle_defs[seg],
                }
            )
        thresholds = c.value_thresholds
        feature = c.value_feature
        for i, tier in enumerate(VALUE_TIERS):
            upper = thresholds[i + 1] if i + 1 < len(thresholds) else None
            if i == 0:
                definition = f"{feature} < {_fmt_num(thresholds[1])}"
            elif upper is None:
                definition = f"{feature} >= {_fmt_num(thresholds[i])}"
            else:
                definition = f"{_fmt_num(thresholds[i])} <= {feature} < {_fmt_num(upper)}"
            if i > 0:
                definition += (
                    f"; stays until {feature} < {_fmt_num(thresholds[i] * (1 - c.value_margin))}"
                )
            catalogue.append(
                {
                    "type": "value",
                    "id": tier,
                    "label": _VALUE_LABELS[tier],
                    "definition": definition,
                }
            )
        for seg in NPS_SEGMENTS:
            score = {"promoter": "9-10", "passive": "7-8", "detractor": "0-6"}[seg]
            catalogue.append(
                {
                    "type": "nps",
                    "id": seg,
                    "label": _NPS_LABELS[seg],
                    "definition": f"last NPS answer {score} (nps_category == '{seg}')",
                }
            )
        for rule in c.user_rules:
            for case in rule.cases:
                catalogue.append(
                    {
                        "type": rule.name,
                        "id": case.id,
                        "label": case.label,
                        "definition": case.when.text,
                        "description": rule.description,
                    }
                )
            if rule.default is not None and all(k.id != rule.default for k in rule.cases):
                catalogue.append(
                    {
                        "type": rule.name,
                        "id": rule.default,
                        "label": rule.label_of(rule.default),
                        "definition": "no case matches (default)",
                        "description": rule.description,
                    }
                )
        return catalogue

    # ---------------------------------------------------------------- common

    @property
    def _types(self) -> list[tuple[Any, ...]]:
        """``(type, decide, words, dwell days, rank, label_of)`` of every type, in order."""
        types = self._type_table
        if types is None:
            c = self.config
            types = [
                (
                    "lifecycle",
                    self._lifecycle_decide,
                    self._lifecycle_words,
                    c.lifecycle_min_dwell_days,
                    _LIFECYCLE_RANK,
                    _lifecycle_label_of,
                ),
                (
                    "value",
                    self._value_decide,
                    self._value_words,
                    c.value_min_dwell_days,
                    _VALUE_RANK,
                    _value_label_of,
                ),
                (
                    "nps",
                    self._nps_decide,
                    self._nps_words,
                    c.nps_min_dwell_days,
                    _NPS_RANK,
                    _nps_label_of,
                ),
            ]
            for rule in c.user_rules:
                types.append(
                    (
                        rule.name,
                        self._user_decider(rule),
                        self._user_words(rule),
                        rule.min_dwell_days,
                        self._user_ranks[rule.name],
                        rule.label_of,
                    )
                )
            self._type_table = types
        return types

    @staticmethod
    def _held(
        proposed: str | None,
        prev_state: Mapping[str, Any] | None,
        clock_ms: int,
        dwell_days: float,
        rank: Mapping[str | None, int],
    ) -> bool:
        """Whether the minimum dwell keeps the previous segment instead of ``proposed``."""
        if not prev_state or dwell_days <= 0:
            return False
        prev = prev_state.get("current")
        since = prev_state.get("since_ms")
        if prev is None or not isinstance(since, int) or isinstance(since, bool):
            return False
        return (
            rank.get(proposed, -1) <= rank.get(prev, -1)
            and clock_ms - since < dwell_days * MS_PER_DAY
        )

    @staticmethod
    def _settle(
        segment_type: str,
        proposed: str | None,
        label: str,
        reasons: list[str],
        prev_state: Mapping[str, Any] | None,
        clock_ms: int,
        dwell_days: float,
        rank: Mapping[str | None, int],
        label_of: Callable[[str | None], str],
    ) -> Assignment:
        prev = prev_state.get("current") if prev_state else None
        since = prev_state.get("since_ms") if prev_state else None
        if not isinstance(since, int) or isinstance(since, bool):
            since = None
        if proposed == prev:
            return Assignment(
                segment_type,
                proposed,
                label,
                reasons,
                False,
                prev,
                clock_ms if since is None else since,
            )
        if (
            prev is not None
            and since is not None
            and dwell_days > 0
            and rank.get(proposed, -1) <= rank.get(prev, -1)
        ):
            dwelt_ms = clock_ms - since
            if dwelt_ms < dwell_days * MS_PER_DAY:
                held = [
                    *reasons,
                    f"stays {prev!r} instead of {proposed!r}: minimum dwell "
                    f"{_fmt_num(dwell_days)} days, in segment for {dwelt_ms // MS_PER_DAY} days",
                ]
                return Assignment(
                    segment_type, prev, f"{label_of(prev)} (held)", held, False, prev, since
                )
        return Assignment(segment_type, proposed, label, reasons, True, prev, clock_ms)

    # ---------------------------------------------------------------- lifecycle

    def _lifecycle_decide(
        self, features: Mapping[str, Any], prev_state: Mapping[str, Any] | None, clock_ms: int
    ) -> tuple[str | None, tuple[Any, ...]]:
        c = self.config
        prev = prev_state.get("current") if prev_state else None
        orders = _num(features.get("orders")) or 0.0
        dslp = _days_since(features, "days_since_last_purchase", "last_purchase_ts", clock_ms)
        if orders <= 0 and dslp is None:
            dsle = _days_since(features, "days_since_last_event", "last_event_ts", clock_ms)
            if dsle is None:
                return None, ()
            if dsle > c.lapsed_days:
                return "lapsed", (dsle,)
            return "prospect", (dsle,)
        dslp = dslp or 0
        frequency = _num(features.get("frequency")) or 0.0
        recency = _num(features.get("recency")) or 0.0
        risk_days = float(c.at_risk_min_days)
        gap = None
        if frequency > 0:
            gap = recency / frequency
            if c.at_risk_factor * gap > risk_days:
                risk_days = c.at_risk_factor * gap
            else:
                gap = None
        if dslp > c.lapsed_days:
            return "lapsed", (dslp, gap, risk_days)
        if dslp > risk_days:
            return "at_risk", (dslp, gap, risk_days)
        age = _days_since(features, "T", "first_purchase_ts", clock_ms)
        if frequency == 0 and age is not None and age <= c.new_days:
            return "new", (dslp, gap, risk_days, age)
        if prev in ("at_risk", "lapsed"):
            return "reactivated", (dslp, gap, risk_days)
        if prev == "reactivated" and self._within(prev_state, clock_ms, c.reactivated_days):
            return "reactivated", (dslp, gap, risk_days, None)
        return "active", (dslp, gap, risk_days)

    def _lifecycle_words(
        self,
        seg: str | None,
        ctx: tuple[Any, ...],
        features: Mapping[str, Any],
        prev_state: Mapping[str, Any] | None,
        clock_ms: int,
    ) -> tuple[str, list[str]]:
        c = self.config
        prev = prev_state.get("current") if prev_state else None
        if seg is None:
            return "No lifecycle segment — no events yet", ["no purchase and no activity recorded"]
        if seg in ("lapsed", "prospect") and len(ctx) == 1:
            (dsle,) = ctx
            if seg == "lapsed":
                return (
                    f"Lapsed prospect — no activity for {dsle} days",
                    [f"no purchase ever and no activity for {dsle} days",
                     f"threshold {c.lapsed_days} days"],
                )  # fmt: skip
            return (
                f"Prospect — last active {dsle} days ago, no purchase yet",
                [f"no purchase yet; last activity {dsle} days ago"],
            )
        dslp, gap, risk_days = ctx[0], ctx[1], ctx[2]
        if gap is None:
            risk_text = f"threshold {c.at_risk_min_days}"
        else:
            risk_text = (
                f"threshold {risk_days:.0f} = {_fmt_num(c.at_risk_factor)} x "
                f"mean gap {gap:.1f} days"
            )
        if seg == "lapsed":
            return (
                f"Lapsed customer — no purchase for {dslp} days",
                [f"no purchase for {dslp} days (threshold {c.lapsed_days})"],
            )
        if seg == "at_risk":
            return (
                f"At-risk customer — no purchase for {dslp} days",
                [f"no purchase for {dslp} days ({risk_text})"],
            )
        if seg == "new":
            age = ctx[3]
            return (
                f"New customer — first purchase {age} days ago",
                [f"first purchase {age} days ago (within {c.new_days})",
                 "no repeat purchase yet (frequency 0)"],
            )  # fmt: skip
        if seg == "reactivated" and len(ctx) == 3:
            return (
                f"Reactivated customer — purchased {dslp} days ago after being {prev}",
                [f"purchase {dslp} days ago after being {prev}"],
            )
        if seg == "reactivated":
            back = (clock_ms - int((prev_state or {}).get("since_ms", clock_ms))) // MS_PER_DAY
            return (
                f"Reactivated customer — back for {back} days",
                [f"reactivated {back} days ago (stays for {c.reactivated_days} days)"],
            )
        return (
            f"Active customer — last purchase {dslp} days ago",
            [f"last purchase {dslp} days ago ({risk_text} for at-risk)"],
        )

    @staticmethod
    def _within(prev_state: Mapping[str, Any] | None, clock_ms: int, days: float) -> bool:
        since = prev_state.get("since_ms") if prev_state else None
        if not isinstance(since, int) or isinstance(since, bool):
            return False
        return clock_ms - since < days * MS_PER_DAY

    # ---------------------------------------------------------------- value

    def _value_decide(
        self, features: Mapping[str, Any], prev_state: Mapping[str, Any] | None, clock_ms: int
    ) -> tuple[str | None, tuple[Any, ...]]:
        c = self.config
        value = _num(features.get(c.value_feature)) or 0.0
        thresholds = c.value_thresholds
        prev = prev_state.get("current") if prev_state else None
        up = 0
        for i in range(len(thresholds) - 1, 0, -1):
            if value >= thresholds[i]:
                up = i
                break
        p = _VALUE_RANK.get(prev) if prev is not None else None
        if p is None or p < 0 or up >= p:
            tier = up
        else:
            # Falling: stay in the highest tier (at most the previous one)
            # whose exit bound threshold * (1 - margin) is still met.
            tier = 0
            for i in range(p, 0, -1):
                if value >= thresholds[i] * (1 - c.value_margin):
                    tier = i
                    break
        return VALUE_TIERS[tier], (value, tier)

    def _value_words(
        self,
        seg: str | None,
        ctx: tuple[Any, ...],
        features: Mapping[str, Any],
        prev_state: Mapping[str, Any] | None,
        clock_ms: int,
    ) -> tuple[str, list[str]]:
        c = self.config
        value, tier = ctx
        thresholds = c.value_thresholds
        assert seg is not None
        feature = c.value_feature
        shown = _fmt_money(value)
        if feature == "revenue_90d":
            label = f"{_VALUE_LABELS[seg]} — 90-day revenue {shown}"
        else:
            label = f"{_VALUE_LABELS[seg]} — {feature} {shown}"
        reasons = [f"{feature} = {shown}"]
        if tier > 0:
            reasons.append(f"{seg} tier from {_fmt_num(thresholds[tier])}")
            if value < thresholds[tier]:
                reasons.append(
                    f"kept by hysteresis: leaves {seg} below "
                    f"{_fmt_num(thresholds[tier] * (1 - c.value_margin))}"
                )
        else:
            reasons.append(f"below the low tier ({_fmt_num(thresholds[1])})")
        if tier + 1 < len(thresholds):
            reasons.append(
                f"next tier {VALUE_TIERS[tier + 1]} from {_fmt_num(thresholds[tier + 1])}"
            )
        return label, reasons

    # ---------------------------------------------------------------- nps

    @staticmethod
    def _nps_decide(
        features: Mapping[str, Any], prev_state: Mapping[str, Any] | None, clock_ms: int
    ) -> tuple[str | None, tuple[Any, ...]]:
        category = features.get("nps_category")
        if category in _NPS_LABELS:
            return category, ()
        return None, ()

    @staticmethod
    def _nps_words(
        seg: str | None,
        ctx: tuple[Any, ...],
        features: Mapping[str, Any],
        prev_state: Mapping[str, Any] | None,
        clock_ms: int,
    ) -> tuple[str, list[str]]:
        if seg is None:
            return "No NPS answer", ["no NPS answer yet"]
        score = features.get("nps_last")
        shown = f" (last score {score})" if score is not None else ""
        reasons = [f"nps_category = {seg!r}"]
        if score is not None:
            reasons.append(f"last NPS score {score}")
        return f"{_NPS_LABELS[seg]}{shown}", reasons

    # ---------------------------------------------------------------- user rules

    @staticmethod
    def _user_decider(rule: UserRule) -> Callable[..., tuple[str | None, tuple[Any, ...]]]:
        def decide(
            features: Mapping[str, Any], prev_state: Mapping[str, Any] | None, clock_ms: int
        ) -> tuple[str | None, tuple[Any, ...]]:
            for case in rule.cases:
                if case.when.fn(features):
                    return case.id, (case,)
            return rule.default, ()

        return decide

    @staticmethod
    def _user_words(rule: UserRule) -> Callable[..., tuple[str, list[str]]]:
        def words(
            seg: str | None,
            ctx: tuple[Any, ...],
            features: Mapping[str, Any],
            prev_state: Mapping[str, Any] | None,
            clock_ms: int,
        ) -> tuple[str, list[str]]:
            if ctx:
                (case,) = ctx
                reasons = [f"matches {case.id!r}: {case.when.text}"]
                reasons.extend(case.when.explain(features))
            else:
                reasons = [
                    "no case matched; default" if seg is not None else "no case matched; no segment"
                ]
            return rule.label_of(seg), reasons

        return words


def _lifecycle_label_of(s: str | None) -> str:
    return _LIFECYCLE_LABELS.get(s, "No lifecycle segment") if s else "No segment"


def _value_label_of(s: str | None) -> str:
    return _VALUE_LABELS.get(s, "No value segment") if s else "No value segment"


def _nps_label_of(s: str | None) -> str:
    return _NPS_LABELS.get(s, "No NPS answer") if s else "No NPS answer"


# --------------------------------------------------------------------------- flaps


FLAP_WINDOW_MS = 7 * MS_PER_DAY
"""A change back into a segment left less than this long ago (event time) is a flap."""


def is_flap(
    entry: Mapping[str, Any] | None,
    current: str | None,
    clock_ms: int,
    window_ms: int = FLAP_WINDOW_MS,
) -> bool:
    """Whether changing a segment type to ``current`` at ``clock_ms`` is a flap.

    A *flap* is a change back into the segment the customer left less than
    ``window_ms`` (event time) earlier: ``entry`` is the segment type's stored
    entry before the change (``{"current", "previous", "since_ms"}``, as the
    worker keeps it in the customer's state; ``None`` before the first
    assignment), whose ``previous`` segment was left at ``since_ms``. Exactly
    ``window_ms`` later is no longer a flap. The worker counts these in
    ``segmenter_segment_flaps_total`` and the quality report.

    Examples
    --------
    >>> day = 86_400_000
    >>> entry = {"current": "at_risk", "previous": "active", "since_ms": 3 * day}
    >>> is_flap(entry, "active", 5 * day), is_flap(entry, "lapsed", 5 * day)
    (True, False)
    >>> is_flap(entry, "active", 10 * day), is_flap(None, "active", 5 * day)
    (False, False)
    """
    return (
        entry is not None
        and entry.get("previous") == current
        and clock_ms - entry["since_ms"] < window_ms
    )
