"""The local broker's files are found from the module (no Kafka started)."""

from __future__ import annotations

from streams.ops import broker
from streams.tools import worker_process


def test_the_broker_pom_and_the_repository_root_are_found() -> None:
    # A module moved one folder down once pointed one level short: the broker's
    # Maven file was looked for under streams/, and `make kafka` failed.
    assert broker.POM.is_file(), broker.POM
    assert (broker.REPO_ROOT / "pyproject.toml").is_file()
    assert (worker_process.REPO / "pyproject.toml").is_file()  # (workers run there)
