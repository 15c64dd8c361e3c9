"""A real Prometheus server scrapes a running worker and sees its event rate.

Uses Debian's ``prometheus`` package, which ``make test`` installs through
``scripts/install-prometheus.sh``; the test is skipped when the binary is missing.
The server runs as a subprocess on a free port with a throw-away configuration and
TSDB directory, scraping only this test's worker, every second.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Stack, Worker, free_port

JOB = "segmenter"
SCRAPE_INTERVAL_S = 1
# rate() needs two samples inside the window: 15 scrapes at 1 s leave ample room.
RATE_QUERY = "sum(rate(segmenter_events_processed_total[15s]))"
TRICKLE_S = 18.0
QUERY_TIMEOUT_S = 60.0


def prometheus_binary() -> str | None:
    found = shutil.which("prometheus")
    if found:
        return found
    debian = Path("/usr/bin/prometheus")
    return str(debian) if debian.is_file() else None


@dataclass
class PrometheusServer:
    """A `prometheus` subprocess scraping one worker."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"prometheus exited ({self.proc.returncode}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Result vector of an instant query (raises on an API error)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        return list(body["data"]["result"])

    def scalar(self, promql: str) -> float | None:
        """Value of a single-series instant query, ``None`` while it has no series."""
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def prometheus_bin() -> str:
    binary = prometheus_binary()
    if binary is None:
        pytest.skip(
            "prometheus binary not found (not on PATH, no /usr/bin/prometheus): run "
            "scripts/install-prometheus.sh as root (`make test` does) or install "
            "Debian's 'prometheus' package"
        )
    return binary


@pytest.fixture
def start_prometheus(prometheus_bin: str, tmp_path: Path) -> Iterator[Any]:
    servers: list[PrometheusServer] = []

    def start(worker: Worker) -> PrometheusServer:
        root = tmp_path / f"prometheus-{len(servers)}"
        (root / "data").mkdir(parents=True)
        config = root / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE_INTERVAL_S}s\n"
            f"  scrape_timeout: {SCRAPE_INTERVAL_S}s\n"
            f"  evaluation_interval: {SCRAPE_INTERVAL_S}s\n"
            "scrape_configs:\n"
            f"  - job_name: {JOB}\n"
            "    metrics_path: /metrics\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{worker.port}']\n"
        )
        port = free_port()
        log_path = root / "prometheus.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    prometheus_bin,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                start_new_session=True,
            )
        server = PrometheusServer(proc=proc, port=port, log_path=log_path)
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


def trickle_batch(n: int, customers: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """One purchase and one browsing event per customer, stamped now."""
    now = int(time.time() * 1000)
    records: list[tuple[str, dict[str, Any]]] = []
    for i, customer in enumerate(customers):
        records.append(
            (
                "browsing",
                {
                    "event_id": f"b-{n}-{i}-{uuid.uuid4().hex[:6]}",
                    "customer_id": customer,
                    "ts": now,
                    "session_id": f"s-{customer}",
                    "action": "product_view",
                    "category": "shoes",
                },
            )
        )
        records.append(
            (
                "purchases",
                {
                    "event_id": f"o-{n}-{i}-{uuid.uuid4().hex[:6]}",
                    "customer_id": customer,
                    "ts": now,
                    "order_id": f"O-{n}-{i}",
                    "amount": 10.0 + i,
                    "items": 1,
                    "category": "shoes",
                    "channel": "web",
                },
            )
        )
    return records


async def test_prometheus_scrapes_worker_and_sees_a_positive_event_rate(
    stack: Stack, start_prometheus: Any
) -> None:
    worker = stack.worker()
    prometheus: PrometheusServer = start_prometheus(worker)
    customers = [f"prom-{c}" for c in ("alice", "bob", "carol")]

    started = time.monotonic()
    batches = 0
    rate: float | None = None
    # A steady trickle (6 events a second) for at least TRICKLE_S; the rate is
    # polled meanwhile and the trickle goes on until it is positive or time is up.
    while time.monotonic() - started < QUERY_TIMEOUT_S:
        await stack.produce(trickle_batch(batches, customers))
        batches += 1
        elapsed = time.monotonic() - started
        if elapsed >= TRICKLE_S:
            rate = await asyncio.to_thread(prometheus.scalar, RATE_QUERY)
            if rate is not None and rate > 0:
                break
        await asyncio.sleep(max(0.0, batches - (time.monotonic() - started)))

    diagnostics = (
        f"after {time.monotonic() - started:.1f}s and {batches} batches\n"
        f"worker log:\n{worker.log_tail(20)}\nprometheus log:\n{prometheus.log_tail(20)}"
    )
    assert rate is not None and rate > 0, f"{RATE_QUERY} = {rate!r} {diagnostics}"

    up = await asyncio.to_thread(prometheus.query, f'up{{job="{JOB}"}}')
    assert len(up) == 1, f"{up} {diagnostics}"
    assert up[0]["metric"]["instance"] == f"127.0.0.1:{worker.port}"
    assert float(up[0]["value"][1]) == 1.0, up

    # Both input topics are seen under their logical names (no test prefix).
    by_topic = await asyncio.to_thread(
        prometheus.query, "sum by (topic) (rate(segmenter_events_processed_total[15s]))"
    )
    rates = {series["metric"].get("topic"): float(series["value"][1]) for series in by_topic}
    assert rates.get("purchases", 0) > 0 and rates.get("browsing", 0) > 0, rates
