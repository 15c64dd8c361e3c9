"""Every setting is documented in the README, and the docs name no setting that
does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from streams.ops.settings_doc import BEGIN, END, markdown_table
from streams.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# SEGMENTER_* variables that are deliberately not Settings fields, and who reads them.
NOT_SETTINGS = {
    "SEGMENTER_DEBUG": "streams/ops/cli.py: the global --debug option",
    "SEGMENTER_BENCH_LOG_LEVEL": "streams/tools/bench.py: its workers' log level",
    "SEGMENTER_BASE_IMAGE": "scripts/docker-base-image.sh",
    "SEGMENTER_DEBIAN_MIRROR": "scripts/docker-base-image.sh",
    "SEGMENTER_DOCKERD_LOG": "scripts/install-docker.sh",
}


def test_the_readme_configuration_table_is_generated_from_the_settings() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == markdown_table(), (
        "README.md's configuration table differs from the Settings model: "
        "run `python -m streams.ops.settings_doc --write`"
    )
    for name in Settings.model_fields:
        assert f"| `{ENV_PREFIX}{name.upper()}` |" in table


def test_every_segmenter_variable_in_the_docs_exists() -> None:
    settings = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for name in set(re.findall(r"\bSEGMENTER_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())):
            assert name in settings or name in NOT_SETTINGS, f"{path.name}: {name} is no setting"


def test_the_variables_that_are_not_settings_are_documented() -> None:
    readme = README.read_text(encoding="utf-8")
    for name, reader in NOT_SETTINGS.items():
        assert name in readme or name.startswith("SEGMENTER_BENCH_"), f"{name} ({reader})"
