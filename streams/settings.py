"""Typed settings, read from ``SEGMENTER_*`` environment variables.

Settings are read inside :func:`streams.worker.app.create_app`, never at import time, so
tests can build apps with their own values.

Every value is checked when the settings are read (ranges, finite numbers,
names of levels and formats, the bootstrap list, the store URL, the minimum
event time), so a typo fails at once with one line naming the variable
(:func:`load_settings`, :class:`SettingsError`) instead of late, deep inside
Kafka or Faust.
"""

from __future__ import annotations

import re
import shlex
import socket
import time
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.eventtime import parse_ts
from models.profile_policy import DEFAULT_ALLOWED, parse_allow_list

__all__ = ["ENV_PREFIX", "Settings", "SettingsError", "load_settings"]

ENV_PREFIX = "SEGMENTER_"

# Kafka's legal topic characters; the app id names Faust's internal topics too.
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")
_STORE_SCHEMES = ("rocksdb", "memory")
_HEAP = re.compile(r"[1-9][0-9]*[kKmMgG]?")
_LOWER = ("log_level", "log_format")


class Settings(BaseSettings):
    """Everything a worker, the CLI and the tools can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        allow_inf_nan=False,  # `inf` / `nan` are never a sensible duration or count
        validate_default=True,
    )

    # The descriptions are the README's configuration table (streams/ops/settings_doc.py).
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092",
        description="Kafka brokers, comma-separated `host:port`; anything but the default "
        'means "use that cluster" (`segmenter kafka start` starts nothing).',
    )
    topic_prefix: str = Field(
        "",
        description="Prefix of every topic name (letters, digits, `.`, `_`, `-`): "
        "several deployments can share one cluster.",
    )
    web_port: int = Field(
        6066,
        ge=1,
        le=65535,
        description="The worker's HTTP port (1 to 65535); workers on one machine need one each.",
    )
    web_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Interface the worker's HTTP server binds (`0.0.0.0`: every interface); "
        "`segmenter customer` asks the worker there.",
    )
    advertised_host: str | None = Field(
        None,
        description="How other workers reach this one (request routing); unset: the web "
        "host, or the machine's hostname when the web host is `0.0.0.0`.",
    )
    app_id: str = Field(
        "segmenter",
        min_length=1,
        description="Faust app id = the consumer group: workers with the same id share the "
        "work (letters, digits, `.`, `_`, `-`: it names the changelog topics too).",
    )
    data_dir: Path = Field(
        Path(".segmenter"),
        description="Local state: the local broker, and RocksDB under `worker-<port>/`.",
    )
    partitions: int = Field(
        4,
        ge=1,
        description="Partitions of the input and output topics and tables created by "
        "`segmenter topics create`: the upper bound on parallel workers.",
    )
    replication_factor: int = Field(
        1,
        ge=1,
        description="Replication factor of the topics `segmenter topics create` creates "
        "(1 on a single broker; 3 on a production cluster).",
    )
    store: str = Field(
        "rocksdb://",
        description="Faust table store: `rocksdb://`, or `memory://` for tests (state is "
        "then rebuilt from the changelogs at every start).",
    )
    dedup_window_days: float = Field(
        7.0,
        gt=0,
        description="How far back, per customer and topic, repeated event ids are "
        "recognised; older events are rejected as `late`.",
    )
    max_future_skew_seconds: int = Field(
        86_400,
        ge=0,
        description="Events whose `ts` lies further ahead of the wall clock are rejected "
        "(`bad_ts`).",
    )
    min_event_time: str = Field(
        "2000-01-01T00:00:00Z",
        description="Events whose `ts` lies before this RFC 3339 time are rejected "
        "(`bad_ts`); lower it to backfill older history (`docs/schemas.md`).",
    )
    segments_config: Path | None = Field(
        None,
        description="YAML file of user-defined rule segments and experiments "
        "(`segments.example.yaml`, `docs/segments.md`).",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text`, or `json`: one JSON object a line, without personal data.",
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="`debug`, `info`, `warning`, `error` or `critical`."
    )
    session_timeout_seconds: float = Field(
        15.0,
        gt=3,
        description="Kafka consumer session timeout (more than 3): how soon a dead "
        "worker's partitions move to the others.",
    )
    cluster_warmup: int = Field(
        200,
        ge=20,
        description="Distinct customers the learner sees before it forms the first "
        "clusters (at least 20; `docs/clustering.md`).",
    )
    cluster_model_lead_days: float = Field(
        2.0,
        ge=0,
        description="In a backlog or replay, events this many days of stream time past "
        "the cluster model's `as_of` wait for the learner's next model, so customers are "
        "placed with the model of their day whatever the load; `0` never waits. Lifted "
        "while no newer model comes for 60 s (`docs/clustering.md`).",
    )
    sweep_due_index: bool = Field(
        True,
        description="The daily pass evaluates a customer silent for a week only "
        "when something can change for them (a due day per customer, kept in memory; "
        '`docs/ARCHITECTURE.md`, "Timers over the stream clock"); `false`: every pass '
        "evaluates every customer.",
    )
    sweep_due_index_max_customers: int = Field(
        250_000,
        ge=0,
        description="Customers per worker whose due day the daily pass keeps in memory "
        "(≈ 0.6 kB each, with the statistics the pass reads from it); beyond, "
        "customers are evaluated at every pass.",
    )
    learning: bool = Field(
        True,
        description="`false` freezes the published model: workers keep assigning with the "
        "latest snapshot on `segment-models` and the learner learns nothing (reproducible "
        "runs, a model under investigation); erase requests are still applied to its "
        "sample and republished.",
    )
    kafka_heap: str = Field(
        "512m",
        description="`-Xmx` of the local broker's JVM that `segmenter kafka start` runs "
        "(e.g. `512m`, `2g`).",
    )
    batch_size: int = Field(
        1000,
        ge=1,
        description="Most input records one consumer fetch hands to the pipeline, "
        "processed and committed as one batch (one state write per customer and one "
        "wait for acknowledgements per batch).",
    )
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio",
        description="The worker's event loop: `asyncio`, or `uvloop` (pip install uvloop; "
        "measured within the noise of this machine, docs/benchmark.md).",
    )
    order_max_held: int = Field(
        50_000,
        ge=0,
        description="Most input events held back so that each partition's events are "
        "handled in event-time order across the input topics (backlogs, replays); beyond "
        'it the oldest go first. `0` handles events in arrival order (see "Event-time '
        'order across topics").',
    )

    # -- churn model (docs/churn.md) --------------------------------------------
    churn_horizon_days: int = Field(
        90,
        ge=1,
        description="H: the churn score is the probability of no purchase (or no activity, "
        "see churn_label) in H days of stream time (starting churn_offset_days from now).",
    )
    churn_label: Literal["purchase", "activity"] = Field(
        "purchase",
        description="What the churn outcome counts: `purchase` (no purchase in H days) or "
        "`activity` (no purchase, browsing, support or feedback event in H days).",
    )
    churn_offset_days: int = Field(
        0,
        ge=0,
        description="Days from the score to the start of its H-day outcome window: `0` asks "
        '"no purchase in the next H days?"; `H` asks "stopped within H days (and silent H '
        'days)?", the question of a team that wants to act before the silence.',
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
    churn_warmup_days: int = Field(
        90,
        ge=0,
        description="Outcomes of snapshots taken in the first days of the stream are not "
        "learnt: histories that began before the stream have truncated windowed features "
        "until the longest window (90 days) has passed.",
    )
    churn_prior_sd: float = Field(
        1.0,
        gt=0,
        description="Prior standard deviation (log-odds) of each churn weight around its "
        "hand-set value, in the online Bayesian logistic regression.",
    )
    churn_memory_outcomes: int = Field(
        50_000,
        ge=2,
        description="Effective memory of the churn learner in outcomes: older outcomes fade, "
        "so the model follows a drifting customer base.",
    )
    churn_medium_threshold: float = Field(
        0.4,
        gt=0,
        lt=1,
        description="Churn score (a probability) at which a customer enters `medium`; "
        "they leave it below 0.1 less.",
    )
    churn_high_threshold: float = Field(
        0.7,
        gt=0,
        lt=1,
        description="Churn score at which a customer enters `high`; they leave it below 0.1 less.",
    )

    # -- security and privacy (docs/security.md) -----------------------------------
    api_token: SecretStr | None = Field(
        None,
        description="When set, every HTTP endpoint but /health, /ready and /metrics "
        "requires `Authorization: Bearer <token>`; the CLI sends it. Every worker of a "
        "group needs the same token (requests are forwarded between workers).",
    )
    learner_salt: SecretStr | None = Field(
        None,
        description="Secret salt of the keys under which the learner holds customers' "
        "samples. Default: generated once and kept on the `learner-salt` topic. Set it "
        "before the first start; changing it later orphans the samples already learned.",
    )
    profile_attributes: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_ALLOWED,
        description="Profile attributes kept (comma-separated); `+name` adds to the "
        "default list. Others are dropped and counted, never stored.",
    )
    profile_max_attributes: int = Field(
        32, ge=1, description="Most profile attributes kept per customer."
    )
    profile_max_value_chars: int = Field(
        200, ge=1, description="Longest profile attribute string value kept."
    )

    @model_validator(mode="after")
    def _check_churn_thresholds(self) -> Settings:
        if not self.churn_medium_threshold < self.churn_high_threshold:
            raise ValueError(
                "SEGMENTER_CHURN_MEDIUM_THRESHOLD must be below SEGMENTER_CHURN_HIGH_THRESHOLD"
            )
        return self

    @field_validator("api_token", "learner_salt", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # docker compose passes `${VAR:-}` as an empty string: that means "not set".
        return None if value == "" else value

    @field_validator("profile_attributes", mode="before")
    @classmethod
    def _allow_list(cls, value: Any) -> tuple[str, ...]:
        return parse_allow_list(value)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [server.strip() for server in value.split(",") if server.strip()]
        if not servers:
            raise ValueError("must list at least one host:port")
        for server in servers:
            where = f" ({server!r})" if len(servers) > 1 else ""
            host, port = _split_host_port(server)
            if not host or any(c.isspace() or c in "/@" for c in host):
                raise ValueError(f"must be host:port, comma-separated{where}")
            if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
                raise ValueError(f"the port must be a number from 1 to 65535{where}")
        return value

    @field_validator("topic_prefix", "app_id")
    @classmethod
    def _check_topic_chars(cls, value: str) -> str:
        if not _TOPIC_CHARS.fullmatch(value):
            raise ValueError(
                "may hold only letters, digits, '.', '_' and '-' (it becomes part of topic names)"
            )
        return value

    @field_validator("store")
    @classmethod
    def _check_store(cls, value: str) -> str:
        scheme, sep, _ = value.partition("://")
        if not sep or scheme not in _STORE_SCHEMES:
            raise ValueError("must be rocksdb:// (or memory:// for tests)")
        return value

    @field_validator("kafka_heap")
    @classmethod
    def _check_heap(cls, value: str) -> str:
        if not _HEAP.fullmatch(value):
            raise ValueError("must be a JVM heap size such as 512m or 2g")
        return value

    @field_validator(*_LOWER, mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("min_event_time")
    @classmethod
    def _check_min_event_time(cls, value: str) -> str:
        try:
            ms = parse_ts(value)
        except ValueError:
            raise ValueError(
                "must be an RFC 3339 time with offset, e.g. 1990-01-01T00:00:00Z"
            ) from None
        if ms < parse_ts("1000-01-01T00:00:00Z"):
            raise ValueError("must be 1000-01-01 or later")
        if ms > time.time() * 1000:
            raise ValueError("lies in the future: every event would be rejected")
        return value

    @property
    def min_event_time_ms(self) -> int:
        """:attr:`min_event_time` in epoch milliseconds (parsed once per value).

        >>> Settings(min_event_time="1990-01-01T00:00:00+01:00").min_event_time_ms
        631148400000
        """
        return _epoch_ms(self.min_event_time)

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


@lru_cache(maxsize=16)
def _epoch_ms(text: str) -> int:
    return parse_ts(text)


def _split_host_port(server: str) -> tuple[str, str | None]:
    """``("host", "port")`` of ``host:port``, ``[v6]:port`` or a bare host (port None)."""
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        return host, (rest.removeprefix(":") or None) if rest else None
    host, sep, port = server.rpartition(":")
    return (host, port) if sep else (server, None)


class SettingsError(ValueError):
    """``SEGMENTER_*`` values that cannot be used; :attr:`lines` has one line per problem.

    >>> err = SettingsError(["SEGMENTER_WEB_PORT=70000: must be at most 65535"])
    >>> str(err)
    'SEGMENTER_WEB_PORT=70000: must be at most 65535'
    """

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def load_settings(**values: Any) -> Settings:
    """:class:`Settings` from the environment (and ``values``), or :class:`SettingsError`.

    >>> load_settings(web_port=6070).web_port
    6070
    >>> try:
    ...     load_settings(web_port=70000, dedup_window_days="inf", log_level="loud")
    ... except SettingsError as err:
    ...     for line in err.lines:
    ...         print(line)
    SEGMENTER_WEB_PORT=70000: must be at most 65535
    SEGMENTER_DEDUP_WINDOW_DAYS=inf: must be a finite number
    SEGMENTER_LOG_LEVEL=loud: must be 'debug', 'info', 'warning', 'error' or 'critical'
    """
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from None


_PHRASES = (
    ("Input should be less than or equal to", "must be at most"),
    ("Input should be greater than or equal to", "must be at least"),
    ("Input should be less than", "must be less than"),
    ("Input should be greater than", "must be greater than"),
    ("Input should be", "must be"),
    ("Value error, ", ""),
    ("String should have at least 1 character", "must not be empty"),
)


def describe_errors(exc: ValidationError) -> list[str]:
    """One ``SEGMENTER_NAME=value: what is wrong`` line per error of ``exc``."""
    lines = []
    for error in exc.errors(include_url=False):
        name = ENV_PREFIX + "_".join(str(part) for part in error["loc"]).upper()
        message = error["msg"]
        for phrase, replacement in _PHRASES:
            if message.startswith(phrase):
                message = replacement + message[len(phrase) :]
                break
        given = error.get("input")
        if isinstance(given, str):
            shown = f"={shlex.quote(given)}"  # as it would be typed in a shell
        else:
            shown = "" if given is None or isinstance(given, dict) else f"={given}"
        lines.append(f"{name}{shown}: {message}"[:300])
    return lines
