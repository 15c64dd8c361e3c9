"""The ``clusters`` section of the segments YAML: pin k or bound it.

By default the learner chooses the number of behavioural clusters in 2..8 by
stability across resamples (``docs/clustering.md``). A team that knows how
many segments it can act on pins it, or narrows the range::

    clusters:
      k: 5            # exactly five clusters
    # or
    clusters:
      k_min: 3
      k_max: 6

Examples
--------
>>> parse_cluster_config({"k": 5})
ClusterConfig(k_min=5, k_max=5)
>>> parse_cluster_config(None)
ClusterConfig(k_min=2, k_max=8)
>>> try:
...     parse_cluster_config({"k_min": 6, "k_max": 4})
... except ValueError as exc:
...     print(exc)
clusters: need 2 <= k_min <= k_max <= 12, got k_min=6, k_max=4
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["K_LIMIT", "ClusterConfig", "parse_cluster_config"]

K_LIMIT = 12
"""The largest k the YAML may ask for (a segmentation beyond that is not one people act on)."""


@dataclass(frozen=True)
class ClusterConfig:
    """Bounds on the number of behavioural clusters (equal bounds pin k)."""

    k_min: int = 2
    k_max: int = 8

    def __post_init__(self) -> None:
        for name in ("k_min", "k_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, not {value!r}")
        if not 2 <= self.k_min <= self.k_max <= K_LIMIT:
            raise ValueError(
                f"need 2 <= k_min <= k_max <= {K_LIMIT}, got k_min={self.k_min}, k_max={self.k_max}"
            )


def parse_cluster_config(data: Any, source: str = "clusters") -> ClusterConfig:
    """Validate the YAML ``clusters`` mapping (``k``, or ``k_min`` and/or ``k_max``)."""
    if data is None:
        return ClusterConfig()
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping with k, or k_min and k_max")
    unknown = set(data) - {"k", "k_min", "k_max"}
    if unknown:
        names = sorted(map(str, unknown))
        raise ValueError(f"{source}: unknown key(s) {names}; known: k, k_min, k_max")
    if "k" in data and ("k_min" in data or "k_max" in data):
        raise ValueError(f"{source}: give k, or k_min/k_max, not both")
    default = ClusterConfig()
    k_min: Any = data.get("k", data.get("k_min", default.k_min))
    k_max: Any = data.get("k", data.get("k_max", default.k_max))
    try:
        return ClusterConfig(k_min=k_min, k_max=k_max)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from exc
