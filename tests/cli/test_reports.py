"""`segmenter segments` and `segmenter experiments`: tables from a worker's API.

A small HTTP server stands in for the worker (the real endpoints are covered by
tests/integration/test_segment_kpis.py and test_experiments.py); each command
runs as a user runs it, the installed console script in a subprocess.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.experiments import Experiment, experiment_report
from models.kpis import Totals, segment_kpis
from tests.cli.test_one_line_errors import closed_port, one_line_error, segmenter

TOTALS = Totals(
    seg={"lifecycle.at_risk": [40, 10, 8, 2, 30, 5, 10, 15, 1234.5, 8000.0, 32]},
    days={99: {"lifecycle.at_risk": [12, 3]}},
)
DOCUMENTS: dict[str, Any] = {
    "/segments": {
        "kpis": {"as_of_day": "2026-04-10", "complete": True},
        "segments": [
            {
                "type": "lifecycle",
                "id": "at_risk",
                "label": "At-risk customer",
                "kpis": segment_kpis(TOTALS, "lifecycle.at_risk", 100),
            },
            {
                "type": "value",
                "id": "top",
                "label": "Top value",
                "kpis": segment_kpis(TOTALS, "value.top", 100),
            },
        ],
    },
    "/experiments": {
        "experiments": [
            experiment_report(
                Experiment("winback", "lifecycle", "at_risk", 0.2, 30, "win-back e-mails"),
                {
                    "treatment": [400, 380, 200, 120, 19000.0, 2_500_000.0, 60],
                    "holdout": [100, 95, 40, 20, 3000.0, 400_000.0, 25],
                },
            )
        ]
    },
}


class FakeWorker(BaseHTTPRequestHandler):
    token: str | None = None

    def do_GET(self) -> None:
        if self.token and self.headers.get("Authorization") != f"Bearer {self.token}":
            status, body = 401, {"error": "unauthorized: send Authorization: Bearer <token>"}
        elif self.path in DOCUMENTS:
            status, body = 200, DOCUMENTS[self.path]
        else:
            status, body = 404, {"error": "not found"}
        raw = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def worker_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeWorker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeWorker.token = None
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_segments_prints_the_kpis_as_a_table(worker_port: int, tmp_path: Path) -> None:
    result = segmenter("segments", tmp=tmp_path, SEGMENTER_WEB_PORT=str(worker_port))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "at_risk" in line)
    for shown in ("40", "12", "3", "25.0%", "1,234.50", "250.00", "-33.3", "25.0%", "75.0%"):
        assert shown in row, (shown, row)
    assert "2026-04-10" in result.stdout
    top = next(line for line in result.stdout.splitlines() if " top " in line)
    assert top.count("-") >= 5  # unknown KPIs of an empty segment
    only = segmenter(
        "segments", "--type", "value", tmp=tmp_path, SEGMENTER_WEB_PORT=str(worker_port)
    )
    assert "at_risk" not in only.stdout and "top" in only.stdout
    raw = segmenter("segments", "--json", tmp=tmp_path, SEGMENTER_WEB_PORT=str(worker_port))
    assert orjson.loads(raw.stdout) == orjson.loads(orjson.dumps(DOCUMENTS["/segments"]))


def test_experiments_prints_arms_and_uplifts(worker_port: int, tmp_path: Path) -> None:
    result = segmenter("experiments", tmp=tmp_path, SEGMENTER_WEB_PORT=str(worker_port))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "winback" in text and "lifecycle.at_risk" in text and "win-back e-mails" in text
    treatment = next(
        line for line in text.splitlines() if line.lstrip("│ ").startswith("treatment")
    )
    for shown in ("400", "380", "52.6%", "31.6%", "50.00", "15.8%"):
        assert shown in treatment, (shown, treatment)
    purchased = next(line for line in text.splitlines() if "purchased" in line and "pts" in line)
    assert "+10.5 pts" in purchased and "significant" in purchased


def test_the_token_is_sent_and_a_refusal_is_one_line(worker_port: int, tmp_path: Path) -> None:
    FakeWorker.token = "s3cret"
    ok = segmenter(
        "experiments",
        tmp=tmp_path,
        SEGMENTER_WEB_PORT=str(worker_port),
        SEGMENTER_API_TOKEN="s3cret",
    )
    assert ok.returncode == 0, ok.stderr
    refused = segmenter("segments", tmp=tmp_path, SEGMENTER_WEB_PORT=str(worker_port))
    one_line_error(refused, "answered 401", "/segments")


@pytest.mark.parametrize("command", ["segments", "experiments"])
def test_no_worker_answering_is_one_line(command: str, tmp_path: Path) -> None:
    port = closed_port()
    result = segmenter(command, tmp=tmp_path, SEGMENTER_WEB_PORT=str(port))
    one_line_error(result, f"no worker answers on http://127.0.0.1:{port}")
    assert result.returncode == 1


def test_a_bad_experiment_is_one_line_before_the_worker_starts(tmp_path: Path) -> None:
    config = tmp_path / "segments.yaml"
    config.write_text(
        "experiments:\n  - {name: winback, segment: lifecycle.at_rsk, holdout: 0.2}\n"
    )
    result = segmenter("worker", tmp=tmp_path, SEGMENTER_SEGMENTS_CONFIG=str(config))
    one_line_error(result, "segments config", "experiment 'winback'", "lifecycle.at_rsk")
    assert result.returncode == 2
