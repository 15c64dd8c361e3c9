"""A plain install works: the wheel, in a fresh virtualenv, without extras.

Builds the wheel from the package's files alone, installs it into a new
virtualenv with its declared runtime dependencies only (no `[dev]`), imports
every module of `streams`, `models` and `schemas` from there, and runs that
virtualenv's `segmenter worker` against the test broker until `/ready` answers
and one purchase comes out as a segment change and a customer document.

A missing runtime dependency (PyYAML once was `dev`-only: `ModuleNotFoundError:
No module named 'yaml'` at `segmenter worker`) fails here, not on a user's machine.

Speed: the dependencies' wheels are kept in `.segmenter/wheelhouse` between runs
and installed from there without asking the index; the folder is filled from
the index (pip's own cache) only when the wheel needs something it lacks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from .conftest import REPO, Stack, Worker, wait_for

WHEELHOUSE = REPO / ".segmenter" / "wheelhouse"
PACKAGE_FILES = ("pyproject.toml", "README.md", "models", "schemas", "streams")

IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys
failed, count = [], 0
for top in ("streams", "models", "schemas"):
    package = importlib.import_module(top)
    if "site-packages" not in package.__file__:
        sys.exit(f"{top} imported from {package.__file__}, not from the virtualenv")
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        count += 1
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
print(count, "modules")
for name in sorted(set(sys.argv[1:]) - set(sys.modules)):
    failed.append(f"{name}: not in the installed package")
sys.exit("\\n".join(failed) if failed else 0)
"""


def source_modules() -> list[str]:
    """Every module of the packages in the source tree (subpackages included)."""
    names = []
    for top in ("streams", "models", "schemas"):
        for path in sorted((REPO / top).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def run(*args: str | Path, cwd: Path, timeout: float = 600) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def build_wheel(tmp_path: Path) -> Path:
    """The wheel, built from a copy holding only what the package is made of."""
    source = tmp_path / "source"
    source.mkdir()
    for name in PACKAGE_FILES:
        if (REPO / name).is_dir():
            skip = shutil.ignore_patterns("__pycache__")
            shutil.copytree(REPO / name, source / name, ignore=skip)
        else:
            shutil.copy2(REPO / name, source / name)
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("segmenter-*.whl")
    return wheel


def install(venv: Path, wheel: Path, cwd: Path) -> None:
    """Install ``wheel`` and its runtime dependencies, offline when the wheelhouse has them."""
    # --no-compile: byte-compiling all of scipy and scikit-learn would take most of
    # the time; the modules Python imports are compiled as they are imported.
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile",
           "--disable-pip-version-check"]  # fmt: skip
    offline = [*pip, "--no-index", "--find-links", WHEELHOUSE, wheel]
    if WHEELHOUSE.is_dir():
        try:
            run(*offline, cwd=cwd)
            return
        except AssertionError:
            pass  # something new is required: fetch it below
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    run(sys.executable, "-m", "pip", "download", "-q", "-d", WHEELHOUSE, wheel, cwd=cwd)
    run(*offline, cwd=cwd)


@pytest.mark.timeout(900)  # a first run downloads every dependency's wheel
def test_wheel_in_a_fresh_venv_without_extras_runs_a_worker(
    stack: Stack, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = round(now - clock, 1)
        clock = now

    wheel = build_wheel(tmp_path)
    lap("build wheel")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    install(venv, wheel, tmp_path)
    lap("venv + install")
    installed = run(venv / "bin" / "python", "-m", "pip", "list", "--format=freeze", cwd=tmp_path)
    for dev_only in ("pytest", "pandas", "hypothesis", "ruff", "mypy"):
        assert f"\n{dev_only}==" not in f"\n{installed.lower()}", f"{dev_only} was installed"
    # Every module of the source tree is in the wheel (a subpackage missing from
    # the build configuration would not be), and imports.
    print(
        run(
            venv / "bin" / "python", "-c", IMPORT_EVERY_MODULE, *source_modules(), cwd=tmp_path
        ).strip()
    )
    lap("import every module")

    worker = stack.worker("plain", start=False)
    # The fresh virtualenv's `segmenter`, run outside the repository.
    plain = Worker(
        env=worker.env, port=worker.port, log_path=worker.log_path,
        command=[str(venv / "bin" / "segmenter"), "worker"], cwd=worker.log_path.parent,
    )  # fmt: skip
    stack.workers[-1] = plain
    plain.start()
    plain.wait_ready(timeout=120)
    lap("worker ready")

    customer = f"plain-{uuid.uuid4().hex[:6]}"
    purchase = {"event_id": "p1", "customer_id": customer, "ts": int(time.time() * 1000) - 60_000,
                "order_id": "o1", "amount": 42.0}  # fmt: skip
    asyncio.run(stack.produce([("purchases", purchase)]))
    changes = asyncio.run(
        stack.consume(
            "segment-changes",
            until=lambda records: any(r["key"] == customer for r in records),
            timeout=60,
        )
    )
    lifecycle = [
        r["value"]
        for r in changes
        if r["key"] == customer and r["value"]["segment_type"] == "lifecycle"
    ]
    assert lifecycle and lifecycle[0]["current"] == "new", plain.log_tail()

    # Outputs are sent before the state is written (docs/delivery.md): wait for it.
    def known() -> dict[str, Any] | None:
        status, document = plain.get(f"/customers/{customer}")
        return document if status == 200 else None

    document = wait_for(known, timeout=30)
    assert document["features"]["orders"] == 1 and document["features"]["revenue"] == 42.0
    with urllib.request.urlopen(plain.url + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert "segmenter_events_processed_total" in metrics and "_created" not in metrics
    lap("one event end to end")

    record_property("timings_s", orjson.dumps(timings).decode())
    print("plain install timings (s):", timings)
