"""Logs a machine can read: fields that every line logged in a block carries (the sync's run
and company, a request's id), and a formatter printing one JSON object per line.

    with log_context(run=run.pk, company=company.slug):
        ...  # every line logged here, in this thread, carries run= and company=

settings.LOGGING installs ContextFilter on its handlers and picks JsonFormatter when
LEARNEXA_LOG_FORMAT=json, TextFormatter (readable, fields at the end) otherwise. Threads
started inside the block do not inherit the fields (contextvars are per thread): start them
with `contextvars.copy_context().run` to carry them over.

This module is loaded by Django's logging set-up, before the apps are: it imports no models.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

# The fields of the innermost block; a new dict per block, never changed in place.
_fields: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "learnexa_log_context", default=None
)


@contextmanager
def log_context(**fields) -> Iterator[dict]:
    """Add `fields` to every record logged in this block (nested blocks add to the outer
    one's fields; a field given None is left out)."""
    merged = {**(_fields.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _fields.set(merged)
    try:
        yield merged
    finally:
        _fields.reset(token)


def current_context() -> dict:
    """The fields of the innermost log_context block around the caller."""
    return dict(_fields.get() or {})


class ContextFilter(logging.Filter):
    """Put the current log_context fields on each record, as `record.context` (a dict) and
    as attributes of their own where that doesn't hide one of the record's."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _fields.get() or {}
        # A record handled by several handlers keeps the fields it got first.
        if not hasattr(record, "context"):
            record.context = dict(fields)
            for name, value in fields.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


_BASE_KEYS = ("time", "level", "logger", "message", "exception", "stack")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    log_context fields (run, company, request_id, …), and the traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "context", None)
        if context is None:
            context = _fields.get() or {}
        for name, value in context.items():
            if name not in _BASE_KEYS:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The readable default, `time LEVEL logger: message`, with the log_context fields
    appended as `[run=12 company=acme]`."""

    def __init__(self, fmt: str | None = None, *args, **kwargs):
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s: %(message)s", *args, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        context = getattr(record, "context", None)
        if context is None:
            context = _fields.get() or {}
        if context:
            line += " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"
        return line
