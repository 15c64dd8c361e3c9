"""Checks before a command relies on Kafka or a port, so a wrong set-up fails at
once with one line.

Inside Faust, a broker that is down, missing topics or a web port that is taken
show up late (after start-up, as retries or a crash deep in a traceback); a
consumer of a topic that does not exist waits forever, and a producer for one
blocks for a minute. Checked here first, each is one
:class:`~streams.ops.cli_errors.CliError`.
"""

from __future__ import annotations

import asyncio
import difflib
import errno
import socket

from streams.ops.cli_errors import CONFIG, CliError, unreachable
from streams.settings import Settings

__all__ = ["check_topics", "check_web_port", "check_worker"]


def check_worker(settings: Settings) -> None:
    """The rules file loads, the web port is free, the data dir is writable and Kafka
    answers with every Segmenter topic: configuration first, then the environment."""
    from models.experiments import load_segments_config
    from streams.topics import TABLE_NAMES, all_topics, changelog_topic

    if settings.segments_config is not None:
        # RulesConfigError (rules or experiments): one line (cli_errors)
        load_segments_config(settings.segments_config)
    check_web_port(settings)
    (settings.data_dir / f"worker-{settings.web_port}").mkdir(parents=True, exist_ok=True)
    # Faust creates a missing changelog itself (with the same partition count).
    changelogs = {changelog_topic(settings, table) for table in TABLE_NAMES}
    check_topics(settings, [s.name for s in all_topics(settings) if s.name not in changelogs])


def check_topics(settings: Settings, topics: list[str], timeout: float = 10.0) -> None:
    """Kafka answers at ``SEGMENTER_KAFKA_BOOTSTRAP`` and holds ``topics`` (full names)."""
    from streams.ops.broker import metadata_ping

    try:
        existing = asyncio.run(metadata_ping(settings.kafka_bootstrap, timeout=timeout))
    except TimeoutError as exc:
        detail = f" (no answer within {timeout:g} s)"
        raise CliError(unreachable(settings.kafka_bootstrap, detail)) from exc
    except Exception as exc:
        raise CliError(unreachable(settings.kafka_bootstrap)) from exc
    missing = [topic for topic in topics if topic not in existing]
    if not missing:
        return
    where = settings.kafka_bootstrap
    if len(missing) == 1:
        (topic,) = missing
        close = difflib.get_close_matches(topic, [t for t in existing if t[:2] != "__"], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; run `segmenter topics create`"
        raise CliError(f"topic {topic!r} does not exist on {where}{hint}", CONFIG)
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    raise CliError(
        f"topics missing on {where}: {', '.join(missing[:3])}{more}; create them with "
        "`segmenter topics create` (same SEGMENTER_* settings)",
        CONFIG,
    )


def check_web_port(settings: Settings) -> None:
    """Nothing listens on the worker's ``web_host:web_port`` yet, and the host is local."""
    try:
        infos = socket.getaddrinfo(
            settings.web_host, settings.web_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise CliError(
            f"SEGMENTER_WEB_HOST={settings.web_host}: cannot resolve it ({exc.strerror})", CONFIG
        ) from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # The same option the web server sets: a port in TIME_WAIT is not "taken".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CliError(
                    f"SEGMENTER_WEB_PORT={settings.web_port}: the port is in use on "
                    f"{settings.web_host} (another worker?); give each worker its own port",
                    CONFIG,
                ) from exc
            raise CliError(
                f"SEGMENTER_WEB_HOST={settings.web_host} SEGMENTER_WEB_PORT={settings.web_port}: "
                f"cannot listen there ({exc.strerror})",
                CONFIG,
            ) from exc
