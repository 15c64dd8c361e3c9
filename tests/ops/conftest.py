"""Shared helpers of the ops tests: repository paths and metric-name extraction."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The ops tests read files of the repository and import `streams`; make that work
# whether or not the package is installed into the interpreter running pytest.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
METRIC_RE = re.compile(r"\bsegmenter_[a-z0-9_]+")


def metric_names_in(expr: str) -> set[str]:
    """Every ``segmenter_*`` metric name used in a PromQL expression."""
    return set(METRIC_RE.findall(expr))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
