"""Holdout experiments on segments: configuration, arms, per-customer outcomes, statistics.

An experiment names a segment (``lifecycle.at_risk``, ``churn.high``, a user
rule's case …) and the share of the customers entering it who are *held out*
from outreach. Each customer's arm is a keyed hash of the experiment name and
the customer id (:func:`arm_of`): the same on every worker, after restarts and
replays, and reproducible by anyone who knows the name::

    u = int.from_bytes(blake2b(customer_id, key=name, digest_size=8), "big") / 2**64
    arm = "holdout" if u < holdout else "treatment"

Every entry into the segment is one *exposure*: it opens an outcome window of
``window_days`` whole days of event time, from the entry to the start of day
``entry_day + window_days``. Events applied while the window is open and dated
inside it count towards the outcome (any behavioural event: *active*; a
purchase: *purchased*, plus its amount in *revenue*); at the first evaluation
at or after the window's end (the daily evaluation of every customer does it)
the outcome closes, with *churn_high* = the customer's churn-risk level is
``high`` then. A customer who enters again while their window is open is not
exposed again; after it closed, a new entry is a new exposure (same arm).

Per arm, :func:`experiment_report` gives the exposures, the closed outcomes,
the share active / purchasing / at high churn risk and the revenue per
customer, and for each outcome the uplift (treatment - holdout) with a 95 %
confidence interval: Newcombe's hybrid score interval for a difference of
proportions, Welch's t interval for the difference of mean revenue.
``docs/segments.md`` ("Experiments") tells how to read them.

Examples
--------
>>> experiment = Experiment("winback", "lifecycle", "at_risk", holdout=0.2)
>>> arm_of("winback", "c000042", 0.2) == arm_of("winback", "c000042", 0.2)
True
>>> share = sum(arm_of("winback", f"c{i}", 0.2) == "holdout" for i in range(10_000)) / 10_000
>>> 0.19 < share < 0.21
True
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.eventtime import MS_PER_DAY
from models.rules import (
    LIFECYCLE_SEGMENTS,
    NPS_SEGMENTS,
    VALUE_TIERS,
    RulesConfig,
    RulesConfigError,
    parse_rules,
)
from models.topics import BEHAVIOUR_TOPICS

__all__ = [
    "ARMS",
    "CHURN_SEGMENTS",
    "OUTCOMES",
    "Experiment",
    "ExperimentsConfigError",
    "arm_of",
    "close_due",
    "enter",
    "experiment_report",
    "known_segments",
    "load_segments_config",
    "mean_difference",
    "observe_event",
    "parse_experiments",
    "proportion_difference",
    "wilson_interval",
]

#: Arms, by their code in per-customer records (0 = treatment, 1 = holdout).
ARMS: tuple[str, str] = ("treatment", "holdout")
#: Churn-risk levels, segments of the type ``churn``.
CHURN_SEGMENTS: tuple[str, ...] = ("low", "medium", "high")
#: Outcomes reported per arm, in report order.
OUTCOMES: tuple[str, ...] = (
    "active_share",
    "purchase_share",
    "revenue_per_customer",
    "churn_high_share",
)
Z_95 = 1.959963984540054

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z", re.ASCII)
_KEYS = {"name", "segment", "holdout", "window_days", "description"}

# Per-customer record of one experiment inside the KPI contribution (models.kpis):
# [arm, exposed, closed, active, purchased, revenue, revenue², churn_high].
_ARM, _EXPOSED, _CLOSED, _ACTIVE, _PURCHASED, _REVENUE, _REVENUE_SQ, _CHURN_HIGH = range(8)
# An open outcome window (customer state "xo"): [entry_ms, end_ms, arm, active, purchased, revenue].
_ENTRY, _END, _W_ARM, _W_ACTIVE, _W_PURCHASED, _W_REVENUE = range(6)


class ExperimentsConfigError(RulesConfigError):
    """The ``experiments`` section of the segments YAML is invalid."""


@dataclass(frozen=True)
class Experiment:
    """One configured experiment.

    Parameters
    ----------
    name
        Unique identifier (letters, digits, ``_``; at most 64): the hash key of the arms.
    segment_type, segment
        The segment whose entrants take part (``churn`` for churn-risk levels).
    holdout
        Share of entrants held out from outreach, strictly between 0 and 1.
    window_days
        Days of event time after the entry over which the outcome is measured.
    """

    name: str
    segment_type: str
    segment: str
    holdout: float
    window_days: int = 30
    description: str = ""

    @property
    def segment_key(self) -> str:
        """``segment_type.segment``, as written in the YAML."""
        return f"{self.segment_type}.{self.segment}"

    def arm(self, customer_id: str) -> str:
        """This customer's arm (see :func:`arm_of`)."""
        return arm_of(self.name, customer_id, self.holdout)


def arm_draw(name: str, customer_id: str) -> float:
    """The customer's uniform draw in ``[0, 1)`` for experiment ``name``.

    >>> arm_draw("winback", "c1") == arm_draw("winback", "c1") != arm_draw("other", "c1")
    True
    """
    digest = hashlib.blake2b(customer_id.encode(), key=name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def arm_of(name: str, customer_id: str, holdout: float) -> str:
    """``"holdout"`` when the customer's draw is below ``holdout``, else ``"treatment"``.

    Raising ``holdout`` later only moves treatment customers into the holdout
    (never the reverse); renaming the experiment draws everyone again.

    >>> arm_of("winback", "c1", 0.0), arm_of("winback", "c1", 1.0)
    ('treatment', 'holdout')
    """
    return ARMS[1] if arm_draw(name, customer_id) < holdout else ARMS[0]


# --------------------------------------------------------------------------- config


def known_segments(config: RulesConfig) -> dict[str, frozenset[str] | None]:
    """Segment ids per segment type an experiment may name (``None``: any id).

    >>> sorted(known_segments(RulesConfig()))
    ['churn', 'cluster', 'lifecycle', 'nps', 'value']
    """
    known: dict[str, frozenset[str] | None] = {
        "lifecycle": frozenset(LIFECYCLE_SEGMENTS),
        "value": frozenset(VALUE_TIERS),
        "nps": frozenset(NPS_SEGMENTS),
        "churn": frozenset(CHURN_SEGMENTS),
        "cluster": None,  # learned: ids come and go with the model
    }
    for rule in config.user_rules:
        ids = {case.id for case in rule.cases}
        if rule.default is not None:
            ids.add(rule.default)
        known[rule.name] = frozenset(ids)
    return known


def load_segments_config(path: str | Path) -> tuple[RulesConfig, tuple[Experiment, ...]]:
    """The rules and the experiments of a segments YAML file (``SEGMENTER_SEGMENTS_CONFIG``).

    Raises
    ------
    models.rules.RulesConfigError
        (or its subclass :class:`ExperimentsConfigError`) naming the file and the entry.

    Examples
    --------
    >>> import tempfile, os
    >>> text = '''
    ... segments: []
    ... experiments:
    ...   - {name: winback, segment: churn.high, holdout: 0.1, window_days: 14}
    ... '''
    >>> with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
    ...     _ = fh.write(text)
    >>> config, experiments = load_segments_config(fh.name)
    >>> os.unlink(fh.name)
    >>> experiments[0].segment_key, experiments[0].window_days
    ('churn.high', 14)
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesConfigError(f"{path}: cannot read rules file: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RulesConfigError(f"{path}: invalid YAML: {exc}") from exc
    config = parse_rules(data, source=str(path))
    items = data.get("experiments") if isinstance(data, dict) else None
    return config, parse_experiments(items, str(path), known_segments(config))


def parse_experiments(
    items: Any, source: str, known: Mapping[str, Collection[str] | None]
) -> tuple[Experiment, ...]:
    """Validate the ``experiments`` list of the segments YAML.

    Raises
    ------
    ExperimentsConfigError
        Naming the file, the experiment and what is wrong.

    Examples
    --------
    >>> known = known_segments(RulesConfig())
    >>> parse_experiments([{"name": "winback", "segment": "lifecycle.at_risk", "holdout": 0.2}],
    ...                   "segments.yaml", known)[0].window_days
    30
    >>> try:
    ...     parse_experiments([{"name": "w", "segment": "lifecycle.at_rsk", "holdout": 0.2}],
    ...                       "segments.yaml", known)
    ... except ExperimentsConfigError as exc:
    ...     print(exc)  # doctest: +ELLIPSIS
    segments.yaml: experiment 'w': unknown segment 'lifecycle.at_rsk'; lifecycle has active, ...
    """
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ExperimentsConfigError(f"{source}: 'experiments' must be a list")
    experiments: list[Experiment] = []
    for index, item in enumerate(items):
        experiment = _parse_experiment(item, index, source, known)
        if any(other.name == experiment.name for other in experiments):
            raise ExperimentsConfigError(
                f"{source}: experiment {experiment.name!r}: name used twice"
            )
        experiments.append(experiment)
    return tuple(experiments)


def _parse_experiment(
    item: Any, index: int, source: str, known: Mapping[str, Collection[str] | None]
) -> Experiment:
    where = f"{source}: experiment #{index + 1}"
    if not isinstance(item, dict):
        raise ExperimentsConfigError(f"{where}: expected a mapping with name, segment, holdout")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ExperimentsConfigError(
            f"{where}: name {name!r} must be an identifier of at most 64 characters"
        )
    where = f"{source}: experiment {name!r}"
    unknown = set(item) - _KEYS
    if unknown:
        raise ExperimentsConfigError(
            f"{where}: unknown key(s) {sorted(map(str, unknown))}; "
            f"known: {', '.join(sorted(_KEYS))}"
        )
    segment = item.get("segment")
    if not isinstance(segment, str) or "." not in segment:
        raise ExperimentsConfigError(
            f"{where}: segment {segment!r} must be 'segment_type.id', e.g. lifecycle.at_risk"
        )
    seg_type, _, seg_id = segment.partition(".")
    if seg_type not in known:
        raise ExperimentsConfigError(
            f"{where}: unknown segment type {seg_type!r}; known: {', '.join(sorted(known))}"
        )
    ids = known[seg_type]
    if not seg_id or (ids is not None and seg_id not in ids):
        listed = ", ".join(sorted(ids)) if ids else "any id"
        raise ExperimentsConfigError(
            f"{where}: unknown segment {segment!r}; {seg_type} has {listed}"
        )
    holdout = item.get("holdout")
    if (
        isinstance(holdout, bool)
        or not isinstance(holdout, int | float)
        or not 0 < holdout < 1
        or not math.isfinite(holdout)
    ):
        raise ExperimentsConfigError(
            f"{where}: holdout must be a share strictly between 0 and 1, not {holdout!r}"
        )
    window = item.get("window_days", 30)
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 365:
        raise ExperimentsConfigError(
            f"{where}: window_days must be a whole number of days from 1 to 365, not {window!r}"
        )
    description = item.get("description", "")
    if not isinstance(description, str):
        raise ExperimentsConfigError(f"{where}: description must be text")
    return Experiment(name, seg_type, seg_id, float(holdout), window, description)


# --------------------------------------------------------------------------- per customer


def enter(
    experiment: Experiment,
    customer_id: str,
    clock_ms: int,
    windows: dict[str, list[Any]],
    tallies: dict[str, list[Any]],
) -> str:
    """The customer enters ``experiment``'s segment at ``clock_ms``; return their arm.

    Opens an outcome window in ``windows`` and counts one exposure in
    ``tallies`` (replacing the tally list: callers keep the old one for the
    delta), unless a window of this experiment is still open.
    """
    arm = experiment.arm(customer_id)
    if experiment.name in windows:
        return arm
    code = ARMS.index(arm)
    end_ms = ((clock_ms // MS_PER_DAY) + experiment.window_days) * MS_PER_DAY
    windows[experiment.name] = [clock_ms, end_ms, code, 0, 0, 0.0]
    tally = tallies.get(experiment.name)
    tally = [code, 0, 0, 0, 0, 0.0, 0.0, 0] if tally is None else list(tally)
    tally[_ARM] = code
    tally[_EXPOSED] += 1
    tallies[experiment.name] = tally
    return arm


def observe_event(windows: dict[str, list[Any]], topic: str, event: Mapping[str, Any]) -> None:
    """Count an applied event in every open window whose span holds its ``ts``."""
    if topic not in BEHAVIOUR_TOPICS:
        return
    ts = event["ts"]
    for window in windows.values():
        if window[_ENTRY] <= ts < window[_END]:
            window[_W_ACTIVE] = 1
            if topic == "purchases":
                window[_W_PURCHASED] = 1
                window[_W_REVENUE] += float(event.get("amount") or 0.0)


def close_due(
    windows: dict[str, list[Any]],
    tallies: dict[str, list[Any]],
    clock_ms: int,
    churn_high: bool,
    configured: Collection[str],
) -> bool:
    """Close the windows that ended by ``clock_ms`` into ``tallies``; return whether any did.

    Windows of experiments no longer configured are dropped. Tally lists are
    replaced, never changed in place.

    >>> windows = {"w": [0, MS_PER_DAY, 1, 1, 1, 40.0]}
    >>> tallies = {"w": [1, 1, 0, 0, 0, 0.0, 0.0, 0]}
    >>> close_due(windows, tallies, MS_PER_DAY, False, {"w"}), windows, tallies["w"]
    (True, {}, [1, 1, 1, 1, 1, 40.0, 1600.0, 0])
    """
    closed = False
    for name in [n for n, w in windows.items() if clock_ms >= w[_END] or n not in configured]:
        window = windows.pop(name)
        if name not in configured:
            continue
        tally = list(tallies.get(name) or [window[_W_ARM], 1, 0, 0, 0, 0.0, 0.0, 0])
        revenue = float(window[_W_REVENUE])
        tally[_CLOSED] += 1
        tally[_ACTIVE] += window[_W_ACTIVE]
        tally[_PURCHASED] += window[_W_PURCHASED]
        tally[_REVENUE] += revenue
        tally[_REVENUE_SQ] += revenue * revenue
        tally[_CHURN_HIGH] += int(churn_high)
        tallies[name] = tally
        closed = True
    return closed


# --------------------------------------------------------------------------- statistics


def wilson_interval(successes: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion.

    >>> [round(v, 4) for v in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    """
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion_difference(
    x1: float, n1: float, x0: float, n0: float, z: float = Z_95
) -> tuple[float, float, float] | None:
    """``p1 - p0`` with Newcombe's hybrid score interval (his method 10).

    Better behaved than the Wald interval for small groups and shares near 0 or
    1. ``None`` when a group is empty.

    >>> [round(v, 4) for v in proportion_difference(56, 70, 48, 80)]  # Newcombe (1998), ex. (a)
    [0.2, 0.0524, 0.3339]
    """
    if n1 <= 0 or n0 <= 0:
        return None
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson_interval(x1, n1, z)
    l0, u0 = wilson_interval(x0, n0, z)
    d = p1 - p0
    return (
        d,
        d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2),
    )


def mean_difference(
    sum1: float, sumsq1: float, n1: float, sum0: float, sumsq0: float, n0: float
) -> tuple[float, float, float] | None:
    """Difference of means with Welch's t interval (95 %), from sums and sums of squares.

    ``None`` with fewer than two observations in a group.

    >>> a = [3.0, 5.0, 7.0, 9.0]; b = [1.0, 2.0, 3.0]
    >>> sq = lambda xs: sum(x * x for x in xs)
    >>> d, lo, hi = mean_difference(sum(a), sq(a), 4, sum(b), sq(b), 3)
    >>> round(d, 3), round(lo, 3), round(hi, 3)  # = scipy.stats.ttest_ind(a, b, equal_var=False)
    (4.0, 0.102, 7.898)
    """
    if n1 < 2 or n0 < 2:
        return None
    from scipy import stats

    m1, m0 = sum1 / n1, sum0 / n0
    v1 = max(0.0, (sumsq1 - n1 * m1 * m1) / (n1 - 1))
    v0 = max(0.0, (sumsq0 - n0 * m0 * m0) / (n0 - 1))
    a, b = v1 / n1, v0 / n0
    se = math.sqrt(a + b)
    d = m1 - m0
    if se == 0:
        return (d, d, d)
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n0 - 1))
    t = float(stats.t.ppf(0.975, df))
    return (d, d - t * se, d + t * se)


def _share(x: float, n: float) -> float | None:
    return x / n if n > 0 else None


def experiment_report(
    experiment: Experiment, arms: Mapping[str, Sequence[float]]
) -> dict[str, Any]:
    """The ``GET /experiments`` entry of one experiment.

    ``arms`` maps ``treatment``/``holdout`` to summed tallies ``[exposed, closed,
    active, purchased, revenue, revenue², churn_high]`` over the whole base.

    Examples
    --------
    >>> e = Experiment("winback", "lifecycle", "at_risk", holdout=0.5, window_days=14)
    >>> report = experiment_report(e, {"treatment": [100, 80, 60, 40, 2000.0, 90000.0, 10],
    ...                                "holdout": [100, 80, 50, 20, 1000.0, 50000.0, 20]})
    >>> report["arms"]["treatment"]["outcomes"]["purchase_share"]
    0.5
    >>> uplift = report["uplift"]["purchase_share"]
    >>> uplift["estimate"], uplift["significant"]
    (0.25, True)
    """
    summary: dict[str, Any] = {}
    totals = {arm: list(arms.get(arm) or [0, 0, 0, 0, 0.0, 0.0, 0]) for arm in ARMS}
    for arm, (exposed, closed, active, purchased, revenue, _sq, high) in totals.items():
        summary[arm] = {
            "customers": int(exposed),
            "in_window": int(exposed - closed),
            "completed": int(closed),
            "outcomes": {
                "active_share": _share(active, closed),
                "purchase_share": _share(purchased, closed),
                "revenue_per_customer": _share(revenue, closed),
                "churn_high_share": _share(high, closed),
            },
        }
    t, h = totals["treatment"], totals["holdout"]
    comparisons = {
        "active_share": proportion_difference(t[2], t[1], h[2], h[1]),
        "purchase_share": proportion_difference(t[3], t[1], h[3], h[1]),
        "revenue_per_customer": mean_difference(t[4], t[5], t[1], h[4], h[5], h[1]),
        "churn_high_share": proportion_difference(t[6], t[1], h[6], h[1]),
    }
    uplift: dict[str, Any] = {}
    for outcome, found in comparisons.items():
        if found is None:
            uplift[outcome] = {"estimate": None, "ci95": None, "significant": None}
            continue
        estimate, low, high = found
        uplift[outcome] = {
            "estimate": estimate,
            "ci95": [low, high],
            "significant": bool(low > 0 or high < 0),
        }
    exposed = t[0] + h[0]
    return {
        "name": experiment.name,
        "segment": experiment.segment_key,
        "description": experiment.description,
        "holdout": experiment.holdout,
        "window_days": experiment.window_days,
        "holdout_share_observed": _share(h[0], exposed),
        "arms": summary,
        "uplift": uplift,
    }
