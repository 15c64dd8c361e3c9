"""Worker logging: plain text, or one JSON object a line (no personal data)."""

from __future__ import annotations

import logging
import time

import orjson

__all__ = ["JsonFormatter", "handlers_for"]


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: ts, level, logger, message (+ exc)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def handlers_for(log_format: str) -> list[logging.Handler] | None:
    """Log handlers for ``SEGMENTER_LOG_FORMAT`` (``None``: Faust's default text)."""
    if log_format != "json":
        return None
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    return [handler]
