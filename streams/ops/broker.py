"""Run a local single-node Apache Kafka broker (KRaft mode) for development and tests.

The pinned broker jars are fetched from Maven Central with Maven using
``kafka/pom.xml`` and cached under ``<data_dir>/kafka/jars``. The broker keeps
its data, log and pid file under ``<data_dir>/kafka``. :func:`stop` only ends
the process this module started (checked by pid *and* command line).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BrokerError", "LocalBroker", "new_cluster_id"]

REPO_ROOT = Path(__file__).resolve().parents[2]  # streams/ops/broker.py
POM = REPO_ROOT / "kafka" / "pom.xml"
KAFKA_MAIN_CLASS = "kafka.Kafka"

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={log_dirs}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.cleaner.backoff.ms=1000
log.segment.bytes=67108864
"""

LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log_file}
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or reached."""


@dataclass
class LocalBroker:
    """A single combined broker/controller on loopback.

    Parameters
    ----------
    data_dir
        Project state folder (``.segmenter`` by default); the broker uses
        ``data_dir/kafka``.
    host, port, controller_port
        Where the broker listens.
    heap
        ``-Xmx`` of the broker JVM (and ``-Xms``), bounded on purpose.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"

    @property
    def home(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def jars_dir(self) -> Path:
        return self.home / "jars"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    # -- jars -----------------------------------------------------------------
    def fetch_jars(self) -> Path:
        """Download the pinned broker jars with Maven unless already cached."""
        marker = self.jars_dir / ".complete"
        if marker.exists():
            return self.jars_dir
        if shutil.which("mvn") is None:
            raise BrokerError("Maven (mvn) is needed to fetch the Kafka broker jars")
        self.jars_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={self.jars_dir.resolve()}", "-DincludeScope=runtime",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError(
                "fetching the Kafka jars with Maven failed:\n"
                + (result.stdout + result.stderr)[-4000:]
            )
        marker.write_text(POM.read_text())
        return self.jars_dir

    # -- process --------------------------------------------------------------
    def pid(self) -> int | None:
        """Return the pid of the broker this module started, if it still runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        if KAFKA_MAIN_CLASS not in cmdline or str(self.home.resolve()) not in cmdline:
            return None  # the pid was reused by another process: not ours
        return pid

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(
            SERVER_PROPERTIES.format(
                host=self.host,
                port=self.port,
                controller_port=self.controller_port,
                log_dirs=(self.home / "data").resolve(),
            )
        )
        (self.home / "log4j.properties").write_text(
            LOG4J_PROPERTIES.format(log_file=self.log_file.resolve())
        )
        return props

    def _java(self, main: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("a Java runtime (java) is needed to run the Kafka broker")
        return [
            java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{(self.home / 'log4j.properties').resolve()}",
            f"-Dsegmenter.home={self.home.resolve()}",
            "-cp", f"{self.jars_dir.resolve()}/*", main, *args,
        ]  # fmt: skip

    def _format_storage(self, props: Path) -> None:
        if (self.home / "data" / "meta.properties").exists():
            return
        cluster_id = f"--cluster-id={new_cluster_id()}"
        cmd = self._java("kafka.tools.StorageTool", "format", cluster_id, "-c", str(props))
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError("formatting KRaft storage failed:\n" + result.stdout + result.stderr)

    def start(self, timeout: float = 90.0) -> int:
        """Start the broker (if not running) and wait until it answers metadata calls."""
        running = self.pid()
        if running is not None:
            self.wait_ready(timeout)
            return running
        self.fetch_jars()
        props = self._write_config()
        self._format_storage(props)
        out = (self.home / "broker.out").open("ab")
        proc = subprocess.Popen(
            self._java(KAFKA_MAIN_CLASS, str(props.resolve())),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the CLI that started it
        )
        self.pid_file.write_text(str(proc.pid))
        try:
            self.wait_ready(timeout, proc=proc)
        except BrokerError:
            self.stop()
            raise
        return proc.pid

    def wait_ready(
        self, timeout: float = 90.0, proc: subprocess.Popen[bytes] | None = None
    ) -> None:
        """Block until a metadata request succeeds, or raise with the log's tail."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {proc.returncode}\n{self.log_tail()}"
                )
            try:
                asyncio.run(metadata_ping(self.bootstrap))
                return
            except Exception as exc:
                last_error = exc
                time.sleep(0.5)
        raise BrokerError(
            f"the broker did not answer on {self.bootstrap} within {timeout:.0f}s "
            f"({last_error!r})\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        texts = []
        for path in (self.home / "broker.out", self.log_file):
            if path.exists():
                texts.append(f"--- {path} (last {lines} lines) ---")
                texts.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(texts)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker this module started; return whether one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        self.pid_file.unlink(missing_ok=True)
        return True


async def metadata_ping(bootstrap: str, timeout: float = 5.0) -> list[str]:
    """Ask the cluster for its metadata; return the topic names. Raises if unreachable."""
    from aiokafka.admin import AIOKafkaAdminClient

    # aiokafka logs every refused connection; while waiting for a broker that
    # is still starting, those are expected, so keep them out of the output.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        topics = await asyncio.wait_for(admin.list_topics(), timeout)
        return sorted(topics)
    finally:
        await admin.close()
        quiet.setLevel(level)


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64, never starting with ``-``.

    (``kafka-storage format -t -x…`` takes such an id for an option; Kafka's own
    ``Uuid.randomUuid`` draws again in that case, and so do we.)

    >>> ids = [new_cluster_id() for _ in range(2000)]
    >>> any(i.startswith("-") for i in ids), {len(i) for i in ids}
    (False, {22})
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
