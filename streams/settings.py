"""Typed settings, read from ``SEGMENTER_*`` environment variables.

Settings are read inside :func:`streams.app.create_app`, never at import time, so
tests can build apps with their own values.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything a worker, the CLI and the tools can be configured with."""

    model_config = SettingsConfigDict(env_prefix="SEGMENTER_", extra="ignore")

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092",
        description="Kafka bootstrap servers. When it is not the default, "
        "`segmenter kafka start` starts nothing.",
    )
    topic_prefix: str = Field("", description="Prefix added to every topic name.")
    web_port: int = Field(6066, description="HTTP port of the worker.")
    web_host: str = Field("127.0.0.1", description="Interface the worker's web server binds.")
    advertised_host: str | None = Field(
        None,
        description="Host other workers use to reach this one (request routing); "
        "default: web_host, or the machine's hostname when web_host is 0.0.0.0.",
    )
    app_id: str = Field("segmenter", description="Faust app id: the consumer group.")
    data_dir: Path = Field(Path(".segmenter"), description="Local state: broker, RocksDB.")
    partitions: int = Field(4, ge=1, description="Partitions of input topics and tables.")
    replication_factor: int = Field(1, ge=1, description="Replication of created topics.")
    store: str = Field("rocksdb://", description="Faust table store URL.")
    dedup_window_days: float = Field(
        7.0,
        gt=0,
        description="How far back, per customer and topic, repeated event ids are "
        "recognised; older events are rejected as late.",
    )
    max_future_skew_seconds: int = Field(
        86_400, description="Events whose ts lies further ahead of the wall clock are rejected."
    )
    segments_config: Path | None = Field(
        None, description="YAML file with user-defined rule segments."
    )
    log_format: str = Field("text", description="`text` or `json` (one object a line).")
    log_level: str = Field("info", description="Log level of the worker.")
    session_timeout_seconds: float = Field(
        15.0,
        gt=3,
        description="Kafka consumer session timeout: how soon a dead worker's "
        "partitions move to the others.",
    )
    cluster_warmup: int = Field(
        200,
        ge=20,
        description="Distinct customers the learner sees before it forms clusters.",
    )
    learning: bool = Field(
        True,
        description="false freezes the published model: workers keep assigning with "
        "the latest snapshot on segment-models and the learner neither learns nor publishes.",
    )
    kafka_heap: str = Field("512m", description="-Xmx of the local broker JVM.")
    batch_size: int = Field(
        1000,
        ge=1,
        description="Most messages an ingest agent processes and commits as one batch "
        "(one state write per customer and one wait for acknowledgements per batch).",
    )
    batch_linger_ms: float = Field(
        10.0,
        gt=0,
        description="How long an ingest agent waits to fill a batch: the latency "
        "it adds when traffic is light.",
    )

    order_max_held: int = Field(
        50_000,
        ge=0,
        description="Most input events held back so that a partition's events are "
        "handled in event-time order across the input topics (a backlog or replay); "
        "beyond it the oldest go first. 0 handles events in arrival order.",
    )

    # -- churn model (docs/churn.md) --------------------------------------------
    churn_horizon_days: int = Field(
        90,
        ge=1,
        description="H: the churn score is the probability of no purchase (or no activity, "
        "see churn_label) in the next H days of stream time.",
    )
    churn_label: Literal["purchase", "activity"] = Field(
        "purchase",
        description="What the churn outcome counts: `purchase` (no purchase in H days) or "
        "`activity` (no purchase, browsing, support or feedback event in H days).",
    )
    churn_snapshot_every_days: int | None = Field(
        None,
        ge=1,
        description="Days between two snapshots of a customer's churn features for the "
        "learner (default: H / 6, rounded up).",
    )
    churn_refit_days: int = Field(
        7, ge=1, description="Days of stream time between two BG/NBD and Pareto/NBD fits."
    )
    churn_min_outcomes: int = Field(
        2000,
        ge=1,
        description="Matured outcomes the churn learner learns before its weights replace "
        "the prior (today's hand-set weights).",
    )
    churn_learning_rate: float = Field(
        0.01, gt=0, description="SGD step of the churn model's online logistic regression."
    )

    def reachable_host(self) -> str:
        """The host name this worker advertises to the others."""
        if self.advertised_host:
            return self.advertised_host
        if self.web_host in ("0.0.0.0", "::", ""):
            return socket.gethostname()
        return self.web_host

    def topic(self, name: str) -> str:
        """Return the full topic name of ``name`` with the configured prefix."""
        return f"{self.topic_prefix}{name}"

    def logical_topic(self, full_name: str) -> str:
        """The name :meth:`topic` was given for ``full_name`` (the prefix removed).

        >>> settings = Settings(topic_prefix="t-")
        >>> settings.logical_topic(settings.topic("purchases"))
        'purchases'
        """
        return full_name.removeprefix(self.topic_prefix)
