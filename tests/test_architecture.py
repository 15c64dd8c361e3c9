"""The layering docs/ARCHITECTURE.md promises, checked on the source (issue #21).

``models/`` and ``schemas/`` are the pure core: no Kafka client, no Faust, no
metrics, nothing of ``streams``; they are tested in microseconds and reused by
tools. Every module declares its public names in ``__all__``.
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
        "def f():\n    from streams.pipeline import Pipeline\n    import faust.types\n"
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
