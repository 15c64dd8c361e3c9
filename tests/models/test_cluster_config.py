"""The segments YAML's ``clusters`` section: pin k or bound it."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.cluster_config import ClusterConfig, parse_cluster_config
from models.rules import RulesConfigError, load_rules


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "segments.yaml"
    path.write_text(text)
    return path


def test_k_is_pinned_or_bounded_from_the_yaml(tmp_path: Path) -> None:
    assert load_rules(write(tmp_path, "clusters: {k: 5}\n")).clusters == ClusterConfig(5, 5)
    bounded = load_rules(write(tmp_path, "clusters:\n  k_min: 3\n  k_max: 6\nsegments: []\n"))
    assert bounded.clusters == ClusterConfig(3, 6)
    assert load_rules(write(tmp_path, "clusters: {k_max: 4}\n")).clusters == ClusterConfig(2, 4)
    assert load_rules(write(tmp_path, "segments: []\n")).clusters == ClusterConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clusters: {k: 1}", "need 2 <= k_min <= k_max <= 12"),
        ("clusters: {k: 40}", "need 2 <= k_min <= k_max <= 12"),
        ("clusters: {k_min: 6, k_max: 3}", "k_min=6, k_max=3"),
        ("clusters: {k: 5, k_max: 6}", "not both"),
        ("clusters: {k: five}", "k_min must be an integer"),
        ("clusters: {kmax: 6}", "unknown key"),
        ("clusters: [5]", "expected a mapping"),
    ],
)
def test_bad_cluster_settings_name_the_file_and_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text + "\n")
    with pytest.raises(RulesConfigError, match=message) as info:
        load_rules(path)
    assert str(path) in str(info.value) and "clusters" in str(info.value)


def test_parse_without_the_section_keeps_the_defaults() -> None:
    assert parse_cluster_config(None) == ClusterConfig(2, 8)
    with pytest.raises(ValueError):
        ClusterConfig(k_min=True, k_max=3)  # type: ignore[arg-type]
