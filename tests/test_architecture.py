"""The layering docs/ARCHITECTURE.md promises, checked on the source (issue #21).

``models/`` and ``schemas/`` are the pure core: no Kafka client, no Faust, no
metrics, nothing of ``streams``; they are tested in microseconds and reused by
tools. Every module declares its public names in ``__all__``. Unit tests are
named after the module they test, or say why not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PURE = ("models", "schemas")
#: What the pure core must not import (top-level package names).
FORBIDDEN = {"faust", "mode", "aiokafka", "kafka", "rocksdict", "prometheus_client", "streams"}
PACKAGES = ("models", "schemas", "streams")

#: ``tests/<pkg>/test_<name>.py`` files that name no module ``<pkg>/<name>.py``,
#: each with why (the rest must mirror a module, see docs/ARCHITECTURE.md).
NOT_NAMED_AFTER_A_MODULE: dict[str, str] = {
    "schemas/test_schema_deadletter.py": "schemas/deadletter.py, named like its schema siblings",
    "schemas/test_schema_files.py": "the published *.schema.json files, not a Python module",
    "schemas/test_schema_properties.py": "property tests of schemas/validation.py",
    "schemas/test_schema_validation.py": "example-based tests of schemas/validation.py",
    "streams/test_agents.py": "the worker's input handling: app, faust_adapter and pipeline",
    "streams/test_churn_learning.py": "churn learning across processing, churn_learner, runner",
    "streams/test_churn_real_data.py": "acceptance of the churn score on CDNOW and simulated data",
    "streams/test_cluster_pacing.py": "the cluster model's worker side: learner, pacing, events",
    "streams/test_clv_learning.py": "CLV models across the sweep, churn learner and workers",
    "streams/test_event_time.py": "event-time outcomes across processing and the sweep",
    "streams/test_min_event_time.py": "the SEGMENTER_MIN_EVENT_TIME setting end to end",
    "streams/test_output_ids.py": "output event ids across processing and re-emission",
    "streams/test_output_order.py": "per-customer output order across ingest batches and sweep",
    "streams/test_profile_attributes.py": "profile attributes through the ingest agent and HTTP",
    "streams/test_segment_kpis.py": "KPIs, memberships and experiments through the batch sink",
}


def modules(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (REPO / pkg).rglob("*.py"))


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every import in ``path``, at any depth (a lazy import counts)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", modules(*PURE), ids=lambda p: str(p.relative_to(REPO)))
def test_the_pure_core_imports_no_kafka_faust_or_streams(path: Path) -> None:
    assert not imported_packages(path) & FORBIDDEN, path


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from streams.worker.pipeline import Pipeline\n    import faust.types\n"
    )
    assert imported_packages(module) & FORBIDDEN == {"streams", "faust"}


@pytest.mark.parametrize("path", modules(*PACKAGES), ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_declares_its_public_names(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    declared = any(
        isinstance(node, ast.Assign | ast.AnnAssign)
        and any(
            isinstance(target, ast.Name) and target.id == "__all__"
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
        for node in tree.body
    )
    assert declared, f"{path.relative_to(REPO)} has no __all__"


def unit_test_files() -> list[str]:
    """Every unit test file of a package (subpackages included), relative to tests/."""
    tests = REPO / "tests"
    return sorted(
        str(p.relative_to(tests)) for pkg in PACKAGES for p in (tests / pkg).rglob("test_*.py")
    )


def names_a_module(test_file: str) -> bool:
    """Whether ``<pkg>/[<sub>/]test_<name>.py`` names the module ``<pkg>/[<sub>/]<name>.py``
    (or a package ``<pkg>/[<sub>/]<name>/``): tests mirror the package."""
    *folders, file = test_file.split("/")
    name = file.removeprefix("test_").removesuffix(".py")
    where = REPO.joinpath(*folders)
    return (where / f"{name}.py").is_file() or (where / name / "__init__.py").is_file()


@pytest.mark.parametrize("test_file", unit_test_files())
def test_every_unit_test_file_is_named_after_a_module_or_says_why(test_file: str) -> None:
    if test_file in NOT_NAMED_AFTER_A_MODULE:
        assert not names_a_module(test_file), f"{test_file} names a module: drop its allowance"
    else:
        assert names_a_module(test_file), (
            f"tests/{test_file} names no module of its package: rename it after the module it "
            "tests, or add it to NOT_NAMED_AFTER_A_MODULE with the reason"
        )


def test_every_allowance_is_for_an_existing_test_file() -> None:
    assert set(NOT_NAMED_AFTER_A_MODULE) <= set(unit_test_files())


def test_the_checker_sees_a_module_a_package_and_neither() -> None:
    assert names_a_module("streams/worker/test_pipeline.py")  # streams/worker/pipeline.py
    assert names_a_module("streams/ops/test_top.py")  # the package streams/ops/top/
    assert not names_a_module("streams/test_pipeline.py")  # not beside its module
    assert not names_a_module("streams/test_agents.py")
    assert not names_a_module("models/test_nothing_by_this_name.py")
