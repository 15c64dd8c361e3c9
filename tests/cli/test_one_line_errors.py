"""Expected failures of `segmenter` commands: one line on stderr, a non-zero exit
status, a traceback only with --debug / SEGMENTER_DEBUG. Each command runs as a
user runs it: the installed console script in a subprocess.

No broker is needed: Kafka is pointed at a port where nothing listens, and
`segmenter customer` talks to a small HTTP server standing in for a worker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

SEGMENTER = str(Path(sys.executable).with_name("segmenter"))


def closed_port() -> int:
    """A local port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def segmenter(*args: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTER_")}
    environ.update(
        SEGMENTER_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port()}",
        SEGMENTER_DATA_DIR=str(tmp / "data"),
        COLUMNS="200",
    )
    environ.update(env)
    return subprocess.run(
        [SEGMENTER, *args], env=environ, cwd=tmp, capture_output=True, text=True, timeout=60
    )


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode != 0, result
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("error: "), line
    assert "Traceback" not in line
    for word in words:
        assert word in line, line
    return line


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("command", "env", "words"),
    [
        (["worker"], {"SEGMENTER_WEB_PORT": "70000"}, ["SEGMENTER_WEB_PORT=70000", "65535"]),
        (["worker"], {"SEGMENTER_WEB_PORT": "-1"}, ["SEGMENTER_WEB_PORT=-1", "at least 1"]),
        (["topics", "create"], {"SEGMENTER_PARTITIONS": "abc"}, ["SEGMENTER_PARTITIONS=abc"]),
        (["topics", "create"], {"SEGMENTER_PARTITIONS": "0"}, ["SEGMENTER_PARTITIONS=0"]),
        (["worker"], {"SEGMENTER_LOG_LEVEL": "loud"}, ["SEGMENTER_LOG_LEVEL=loud", "'info'"]),
        (["worker"], {"SEGMENTER_LOG_FORMAT": "xml"}, ["SEGMENTER_LOG_FORMAT=xml", "'json'"]),
        (["worker"], {"SEGMENTER_DEDUP_WINDOW_DAYS": "inf"}, ["DEDUP_WINDOW_DAYS=inf", "finite"]),
        (
            ["worker"],
            {"SEGMENTER_SESSION_TIMEOUT_SECONDS": "nan"},
            ["TIMEOUT_SECONDS=nan", "finite"],
        ),
        (["worker"], {"SEGMENTER_EVENT_LOOP": "tokio"}, ["SEGMENTER_EVENT_LOOP=tokio", "uvloop"]),
        (["worker"], {"SEGMENTER_SESSION_TIMEOUT_SECONDS": "1"}, ["SESSION_TIMEOUT_SECONDS=1"]),
        (["worker"], {"SEGMENTER_STORE": "redis://x"}, ["SEGMENTER_STORE=redis://x", "rocksdb"]),
        (["tail", "churn-risk"], {"SEGMENTER_KAFKA_BOOTSTRAP": "k:99999"}, ["KAFKA_BOOTSTRAP"]),
        (["worker"], {"SEGMENTER_KAFKA_BOOTSTRAP": "a b:1"}, ["host:port"]),
        (["worker"], {"SEGMENTER_TOPIC_PREFIX": "my prefix"}, ["TOPIC_PREFIX='my prefix'"]),
        (["worker"], {"SEGMENTER_MIN_EVENT_TIME": "1990-01-01"}, ["MIN_EVENT_TIME", "RFC 3339"]),
        (["worker"], {"SEGMENTER_LEARNING": "maybe"}, ["SEGMENTER_LEARNING=maybe"]),
        (["worker"], {"SEGMENTER_KAFKA_HEAP": "lots"}, ["SEGMENTER_KAFKA_HEAP=lots"]),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    command: list[str], env: dict[str, str], words: list[str], tmp_path: Path
) -> None:
    result = segmenter(*command, tmp=tmp_path, **env)
    one_line_error(result, *words)
    assert result.returncode == 2


def test_every_bad_setting_gets_its_own_line(tmp_path: Path) -> None:
    result = segmenter(
        "worker",
        tmp=tmp_path,
        SEGMENTER_WEB_PORT="0",
        SEGMENTER_LOG_LEVEL="loud",
        SEGMENTER_DEDUP_WINDOW_DAYS="inf",
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 2
    assert [line.split("=")[0] for line in lines] == [
        "error: SEGMENTER_WEB_PORT",
        "error: SEGMENTER_DEDUP_WINDOW_DAYS",
        "error: SEGMENTER_LOG_LEVEL",
    ]


def test_settings_are_case_insensitive_where_it_is_harmless(tmp_path: Path) -> None:
    # LOG_LEVEL=INFO is a valid level; the failure is then the broker's, not the setting's.
    result = segmenter("worker", tmp=tmp_path, SEGMENTER_LOG_LEVEL="INFO")
    one_line_error(result, "Kafka is not reachable")


# ------------------------------------------------------------ files and rules


def test_replay_of_a_missing_file_says_so_before_touching_kafka(tmp_path: Path) -> None:
    result = segmenter("replay", "/missing.jsonl", "--topic", "purchases", tmp=tmp_path)
    one_line_error(result, "/missing.jsonl", "No such file or directory")
    assert result.returncode == 2


def test_replay_of_a_directory(tmp_path: Path) -> None:
    result = segmenter("replay", str(tmp_path), "--topic", "purchases", tmp=tmp_path)
    one_line_error(result, str(tmp_path), "Is a directory")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("- name: x\n  cases: [\n", ["invalid YAML"]),
        ("- name: 9lives\n  cases: []\n  default: null\n", ["9lives"]),
        (
            "- name: vip\n  cases:\n    - {id: v, label: V, when: 'revenu_30d > 5'}\n"
            "  default: null\n",
            ["revenu_30d"],
        ),
    ],
)
def test_a_broken_rules_file_is_one_line(text: str, words: list[str], tmp_path: Path) -> None:
    rules = tmp_path / "segments.yaml"
    rules.write_text(text)
    result = segmenter("worker", tmp=tmp_path, SEGMENTER_SEGMENTS_CONFIG=str(rules))
    one_line_error(result, "segments config", str(rules), *words)
    assert result.returncode == 2


def test_a_missing_rules_file_is_one_line(tmp_path: Path) -> None:
    result = segmenter("worker", tmp=tmp_path, SEGMENTER_SEGMENTS_CONFIG="/nowhere/rules.yaml")
    one_line_error(result, "/nowhere/rules.yaml", "No such file")


# ---------------------------------------------------------------------- Kafka


@pytest.mark.parametrize(
    "command",
    [
        ["worker"],
        ["topics", "create"],
        ["tail", "segment-changes"],
        ["simulate", "--customers", "2", "--days", "2"],
        ["kafka", "status"],
    ],
)
def test_kafka_unreachable_is_one_line(command: list[str], tmp_path: Path) -> None:
    result = segmenter(*command, tmp=tmp_path, SEGMENTER_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert result.returncode == 1
    if command[0] == "kafka":  # status answers on stdout; no error line
        assert "not reachable" in result.stdout and result.stderr == ""
        return
    one_line_error(result, "Kafka is not reachable at 127.0.0.1:1", "segmenter kafka start")


def test_replay_with_kafka_unreachable(tmp_path: Path) -> None:
    events = tmp_path / "purchases.jsonl"
    events.write_text('{"event_id":"e","customer_id":"c","ts":1700000000000,"order_id":"o",'
                      '"amount":1}\n')  # fmt: skip
    result = segmenter("replay", str(events), "--topic", "purchases", tmp=tmp_path)
    one_line_error(result, "Kafka is not reachable")


# ------------------------------------------------------------------ customers


class FakeWorker(BaseHTTPRequestHandler):
    """Answers GET /customers/{id} like a worker: 200 for known ids, 404 otherwise."""

    known = {"a b", "ünï-cøde", "a/b", "50%"}
    paths: list[str] = []

    def do_GET(self) -> None:
        from urllib.parse import unquote

        FakeWorker.paths.append(self.path)
        customer_id = unquote(self.path.removeprefix("/customers/"))
        if customer_id in self.known:
            body = orjson.dumps({"customer_id": customer_id, "features": {"orders": 1},
                                 "segments": {}, "churn_risk": {}})  # fmt: skip
            self.send_response(200)
        else:
            body = orjson.dumps({"error": "unknown customer", "customer_id": customer_id})
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_worker() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeWorker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeWorker.paths = []
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("customer_id", "path"),
    [
        ("a b", "/customers/a%20b"),
        ("ünï-cøde", "/customers/%C3%BCn%C3%AF-c%C3%B8de"),
        ("a/b", "/customers/a%2Fb"),
        ("50%", "/customers/50%25"),
    ],
)
def test_customer_ids_are_url_encoded(
    customer_id: str, path: str, fake_worker: int, tmp_path: Path
) -> None:
    result = segmenter(
        "customer", customer_id, "--raw", tmp=tmp_path, SEGMENTER_WEB_PORT=str(fake_worker)
    )
    assert result.returncode == 0, result.stderr
    assert FakeWorker.paths == [path]
    assert orjson.loads(result.stdout)["customer_id"] == customer_id


def test_an_unknown_customer_is_one_line(fake_worker: int, tmp_path: Path) -> None:
    result = segmenter("customer", "nobody here", tmp=tmp_path, SEGMENTER_WEB_PORT=str(fake_worker))
    one_line_error(result, "'nobody here'", "unknown")


def test_no_worker_answering_is_one_line(tmp_path: Path) -> None:
    port = closed_port()
    result = segmenter("customer", "c1", tmp=tmp_path, SEGMENTER_WEB_PORT=str(port))
    one_line_error(result, f"no worker answers on http://127.0.0.1:{port}")


# ---------------------------------------------------------------------- debug


@pytest.mark.parametrize("how", ["option", "env"])
def test_debug_shows_the_traceback(how: str, tmp_path: Path) -> None:
    args = ["--debug"] if how == "option" else []
    env = {"SEGMENTER_DEBUG": "1"} if how == "env" else {}
    result = segmenter(*args, "replay", "/missing.jsonl", "--topic", "purchases", tmp=tmp_path,
                       **env)  # fmt: skip
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith(
        "FileNotFoundError: [Errno 2] No such file or directory: '/missing.jsonl'"
    )


def test_a_bad_start_date_for_the_simulator_is_one_line(tmp_path: Path) -> None:
    result = segmenter("simulate", "--start", "2020-13-01", "--days", "1", tmp=tmp_path)
    one_line_error(result, "--start '2020-13-01'", "YYYY-MM-DD")
    assert result.returncode == 2


def test_a_bad_loglevel_option_names_the_option(tmp_path: Path) -> None:
    result = segmenter("worker", "--loglevel", "loud", tmp=tmp_path)
    one_line_error(result, "--loglevel loud", "'warning'")
    assert result.returncode == 2


def test_customer_asks_a_worker_listening_everywhere_locally(
    fake_worker: int, tmp_path: Path
) -> None:
    env = {"SEGMENTER_WEB_HOST": "0.0.0.0", "SEGMENTER_WEB_PORT": str(fake_worker)}
    result = segmenter("customer", "a b", "--raw", tmp=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert FakeWorker.paths == ["/customers/a%20b"]
