"""A ``segmenter worker`` subprocess, as the benchmarks and the broker tests run it.

One harness for both, so what the benchmark measures is the worker the tests
check: the same environment (``SEGMENTER_*`` settings), the same readiness
probe (``GET /ready``), the same graceful stop (SIGTERM to the process group,
SIGKILL after a timeout).

Examples
--------
>>> worker = WorkerProcess.configured(
...     bootstrap="127.0.0.1:9092", prefix="t-", app_id="a", partitions=4,
...     data_dir=Path("/tmp/w1"), port=8123)
>>> worker.env["SEGMENTER_WEB_PORT"], worker.url, worker.log_path.name
('8123', 'http://127.0.0.1:8123', 'worker.log')
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ["REPO", "SEGMENTER", "WorkerProcess", "free_port", "proc_status_kb"]

REPO = Path(__file__).resolve().parents[2]
# The console script of the interpreter that runs us (the project's virtualenv).
SEGMENTER = str(Path(sys.executable).with_name("segmenter"))

_UNREACHABLE = (urllib.error.URLError, ConnectionError, TimeoutError)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status_kb(pid: int, field_name: str) -> int | None:
    """A ``kB`` field (``VmHWM``, ``VmRSS``) of ``/proc/<pid>/status``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass
class WorkerProcess:
    """A worker subprocess: its environment, web port and log file.

    Errors (the worker exited, never became ready) are ``AssertionError``\\ s
    carrying the log's tail, so a test shows why and a benchmark stops with it.
    """

    env: dict[str, str]
    port: int
    log_path: Path
    command: list[str] = field(default_factory=lambda: [SEGMENTER, "worker"])
    cwd: Path = REPO
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def configured(
        cls,
        *,
        bootstrap: str,
        prefix: str,
        app_id: str,
        partitions: int,
        data_dir: Path,
        port: int | None = None,
        log_level: str = "info",
        extra_env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        """A worker of one deployment (topic prefix and consumer group), with its
        own data dir and port; the rest of the environment is inherited."""
        port = port or free_port()
        env = dict(os.environ)
        env.update(
            {
                "SEGMENTER_KAFKA_BOOTSTRAP": bootstrap,
                "SEGMENTER_TOPIC_PREFIX": prefix,
                "SEGMENTER_APP_ID": app_id,
                "SEGMENTER_PARTITIONS": str(partitions),
                "SEGMENTER_WEB_PORT": str(port),
                "SEGMENTER_DATA_DIR": str(data_dir),
                "SEGMENTER_LOG_LEVEL": log_level,
                **(extra_env or {}),
            }
        )
        return cls(env=env, port=port, log_path=data_dir / "worker.log")

    @property
    def bootstrap(self) -> str:
        return self.env["SEGMENTER_KAFKA_BOOTSTRAP"]

    @property
    def prefix(self) -> str:
        """The deployment's topic prefix."""
        return self.env["SEGMENTER_TOPIC_PREFIX"]

    # -- the process ---------------------------------------------------------------
    def start(self) -> WorkerProcess:
        """Start the process (its own session, output appended to the log)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.cwd, start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the worker was never started"
        return self.proc.pid

    def check_alive(self) -> None:
        """Raise with the log's tail if the process has exited."""
        assert self.proc is not None, "the worker was never started"
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited ({self.proc.returncode}):\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait for ``GET /ready`` to answer 200; return the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self.check_alive()
            with contextlib.suppress(*_UNREACHABLE):
                if self.request("/ready", timeout=5)[0] == 200:
                    return time.monotonic() - started
            time.sleep(0.25)
        raise AssertionError(f"worker not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        """Send ``sig`` to the process group; SIGKILL if it is still there after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown code runs."""
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def rss_kb(self) -> int | None:
        return proc_status_kb(self.pid, "VmRSS")

    def hwm_kb(self) -> int | None:
        return proc_status_kb(self.pid, "VmHWM")

    # -- its HTTP endpoints --------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """``GET path``: status and raw body (an HTTP error is an answer, not an exception)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        """``GET path``: status and the decoded JSON body (text if it is not JSON)."""
        status, body = self.request(path, timeout)
        try:
            return status, orjson.loads(body)
        except orjson.JSONDecodeError:
            return status, body.decode(errors="replace")

    def text(self, path: str) -> str:
        """``GET path`` as text (``/metrics``); an HTTP error raises."""
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return str(response.read().decode())
