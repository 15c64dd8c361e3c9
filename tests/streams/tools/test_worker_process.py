"""The worker harness the benchmarks and the broker tests share, on a stand-in
worker (a tiny HTTP server) so it runs in a second without Kafka."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.tools.worker_process import WorkerProcess

# Answers /ready after a delay and /doc with JSON; ignores SIGTERM when asked to.
STAND_IN = """
import http.server, json, os, signal, sys, time
started = time.monotonic()
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("stand-in up", flush=True)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ready":
            ready = time.monotonic() - started > float(os.environ.get("READY_AFTER", "0"))
            self.send_response(200 if ready else 503); self.end_headers()
        elif self.path == "/doc":
            body = json.dumps({"answer": 42}).encode()
            self.send_response(200); self.end_headers(); self.wfile.write(body)
        else:
            self.send_response(404); self.end_headers(); self.wfile.write(b"no such page")
    def log_message(self, *args):
        pass
port = int(os.environ["SEGMENTER_WEB_PORT"])
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess.configured(
        bootstrap="127.0.0.1:1", prefix="t-", app_id="a", partitions=2, data_dir=tmp_path / "w"
    )
    worker.command = [sys.executable, "-c", STAND_IN]
    yield worker
    worker.kill()


def test_a_deployment_is_its_environment(tmp_path: Path) -> None:
    worker = WorkerProcess.configured(
        bootstrap="b:9092", prefix="p-", app_id="g", partitions=3, data_dir=tmp_path,
        extra_env={"SEGMENTER_LEARNING": "false"},
    )  # fmt: skip
    assert (worker.bootstrap, worker.prefix) == ("b:9092", "p-")
    assert worker.env["SEGMENTER_APP_ID"] == "g" and worker.env["SEGMENTER_PARTITIONS"] == "3"
    assert worker.env["SEGMENTER_DATA_DIR"] == str(tmp_path)
    assert worker.env["SEGMENTER_LEARNING"] == "false"
    assert worker.env["SEGMENTER_WEB_PORT"] == str(worker.port)


def test_ready_waits_for_the_probe_and_answers_are_decoded(stand_in: WorkerProcess) -> None:
    stand_in.env["READY_AFTER"] = "1.0"
    stand_in.start()
    assert stand_in.wait_ready(timeout=20) >= 1.0
    assert stand_in.get("/doc") == (200, {"answer": 42})
    assert stand_in.get("/missing") == (404, "no such page")  # an error is an answer
    assert "stand-in up" in stand_in.log_tail()


def test_a_worker_that_exits_is_reported_with_its_log(stand_in: WorkerProcess) -> None:
    stand_in.command = [sys.executable, "-c", "print('bad settings'); raise SystemExit(2)"]
    stand_in.start()
    with pytest.raises(AssertionError, match=r"worker exited \(2\)[\s\S]*bad settings"):
        stand_in.wait_ready(timeout=20)


def test_stop_is_graceful_first_then_forced(stand_in: WorkerProcess) -> None:
    stand_in.env["IGNORE_TERM"] = "1"
    stand_in.start()
    stand_in.wait_ready(timeout=20)
    started = time.monotonic()
    stand_in.stop(timeout=1.0)  # SIGTERM is ignored: killed after the timeout
    assert stand_in.proc is not None and stand_in.proc.returncode == -signal.SIGKILL
    assert 1.0 <= time.monotonic() - started < 10
