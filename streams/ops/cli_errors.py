"""Expected failures of the ``segmenter`` commands, each as one line on stderr.

A user who mistypes a setting, points at a broker that is down, names a file
that does not exist or asks for an unknown customer gets one line that says
what is wrong and a non-zero exit status, not a traceback. ``--debug`` (or
``SEGMENTER_DEBUG=1``) shows the full traceback instead. Anything not
recognised here is a bug and keeps its traceback.

Commands raise :class:`CliError` for failures they detect themselves; the
rest (settings, rules YAML, files, Kafka) is recognised by :func:`describe`,
in one place, so commands need no ``try`` of their own. Exit status 2 means
the input or configuration is wrong, 1 that something the command needs
(Kafka, a worker) is not there.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "CliError",
    "Failure",
    "debug_enabled",
    "describe",
    "run",
    "set_debug",
    "unreachable",
]

CONFIG = 2  # exit status: bad settings, rules, files or arguments
UNAVAILABLE = 1  # exit status: Kafka or a worker cannot be reached, or it refused

_debug = False


class CliError(Exception):
    """A failure a command detected itself: ``message`` is the one line to show.

    >>> describe(CliError("no worker answers on http://127.0.0.1:6066")).lines
    ('no worker answers on http://127.0.0.1:6066',)
    """

    def __init__(self, message: str, exit_code: int = UNAVAILABLE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Failure:
    """What to print (one line per problem) and the exit status."""

    lines: tuple[str, ...]
    exit_code: int


def set_debug(enabled: bool) -> None:
    """Show tracebacks instead of one-line errors (the global ``--debug`` option)."""
    global _debug
    _debug = enabled


def debug_enabled() -> bool:
    """``--debug`` was given or ``SEGMENTER_DEBUG`` is set to a true value."""
    flag = os.environ.get("SEGMENTER_DEBUG", "").strip().lower()
    return _debug or flag in ("1", "true", "yes", "on")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe(exc: BaseException) -> Failure | None:
    """The one-line description of an expected failure, ``None`` for anything else.

    >>> describe(FileNotFoundError(2, "No such file or directory", "/missing.jsonl")).lines
    ('/missing.jsonl: No such file or directory',)
    >>> describe(ZeroDivisionError("a bug")) is None
    True
    """
    from models.rules import RulesConfigError
    from streams.settings import SettingsError
    from streams.topics import TopicCreationError

    if isinstance(exc, CliError):
        return Failure((_one_line(str(exc)),), exc.exit_code)
    if isinstance(exc, SettingsError):
        return Failure(tuple(_one_line(line) for line in exc.lines), CONFIG)
    if isinstance(exc, RulesConfigError):
        return Failure((f"segments config: {_one_line(str(exc))}",), CONFIG)
    if isinstance(exc, TopicCreationError):
        return Failure((_one_line(str(exc)),), CONFIG)
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or type(exc).__name__
        return Failure((f"{exc.filename}: {reason}",), CONFIG)
    kafka = _kafka_failure(exc)
    if kafka is not None:
        return Failure((kafka,), UNAVAILABLE)
    return None


def _kafka_failure(exc: BaseException) -> str | None:
    from aiokafka.errors import (
        KafkaConnectionError,
        KafkaTimeoutError,
        NodeNotReadyError,
        RequestTimedOutError,
        UnknownTopicOrPartitionError,
    )

    where = _bootstrap()
    if isinstance(exc, KafkaConnectionError | NodeNotReadyError):
        return unreachable(where)
    if isinstance(exc, KafkaTimeoutError | RequestTimedOutError):
        return f"Kafka at {where} did not answer in time ({type(exc).__name__})"
    if isinstance(exc, UnknownTopicOrPartitionError):
        return f"a topic does not exist on {where}: run `segmenter topics create`"
    return None


def unreachable(bootstrap: str, detail: str = "") -> str:
    """The line for a Kafka cluster that does not answer."""
    return (
        f"Kafka is not reachable at {bootstrap}{detail}; start it with "
        "`segmenter kafka start` or set SEGMENTER_KAFKA_BOOTSTRAP"
    )


def _bootstrap() -> str:
    from streams.settings import Settings

    try:
        return Settings().kafka_bootstrap
    except Exception:  # the settings themselves are broken: say what we can
        return os.environ.get("SEGMENTER_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def _quiet_libraries() -> None:
    """Keep aiokafka's and asyncio's own error logs off the terminal of a command.

    Without a handler anywhere, Python prints warnings and errors to stderr
    (``logging.lastResort``), so a refused connection would add lines of its
    own next to ours. A worker configures real handlers on the root logger, and
    these records still reach them.
    """
    for name in ("aiokafka", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


def run(app: Callable[[], object]) -> None:
    """Run the typer ``app``; expected failures become one line each and an exit status."""
    if not debug_enabled():
        _quiet_libraries()
    try:
        app()
    except Exception as exc:
        failure = describe(exc)
        if debug_enabled():
            traceback.print_exception(exc)
            if failure is not None:
                sys.exit(failure.exit_code)
            sys.exit(1)
        if failure is None:
            raise
        for line in failure.lines:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(failure.exit_code)
