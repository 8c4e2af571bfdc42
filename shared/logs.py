"""Structured logs: one JSON object per line, with the run's ids when there is a run."""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode
# Fields a log call may pass with `extra=`; anything else is ignored, so a body or a secret
# can never reach a log line by accident.
FIELDS = (
    "service",
    "workspace",
    "trigger",
    "execution_id",
    "attempt",
    "status",
    "duration_ms",
    "queue",
    "reason",
    "count",
)


# The run a task is working on: every line logged while it runs carries these fields
# (the engine's, the steps', the libraries' lines too), set once by `run_context`.
_RUN: ContextVar[dict[str, Any] | None] = ContextVar("hookline_run", default=None)


class run_context:  # lower case: used like the function it was, `with run_context(...):`
    """Within this block (this task and the tasks it starts), log lines carry `fields`.

    A class rather than a generator-based context manager: the worker enters one per
    execution, and a class allocates one object where a generator takes three.
    """

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        fields = self._fields
        self._token = _RUN.set({**(_RUN.get() or {}), **{k: v for k, v in fields.items() if k in FIELDS}})

    def __exit__(self, *exc: object) -> None:
        _RUN.reset(self._token)


class RunContextFilter(logging.Filter):
    """Adds the current run's fields to a record that does not set them itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_RUN.get() or {}).items():
            if record.__dict__.get(name) is None:
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """`{"ts": ..., "level": ..., "logger": ..., "msg": ..., <FIELDS>}`."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _encode(line).decode()


# Control characters as escapes in text lines: a caller's NUL or newline (in a request path,
# say) must not forge or split a line. JSON lines escape them already.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
}


class TextFormatter(logging.Formatter):
    """A readable line for a terminal: time, service, message, then the ids (control characters escaped)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        ids = " ".join(f"{n}={record.__dict__[n]}" for n in FIELDS if record.__dict__.get(n) is not None)
        text = f"{stamp} {self.service:<10} {record.levelname.lower():<7} {record.getMessage()}"
        if ids:
            text += f"  {ids}"
        text = text.translate(_ESCAPES)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Send every logger's records to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if json else TextFormatter(service))
    handler.addFilter(RunContextFilter())
    # What no formatter here prints, and every record would compute: the caller's file and
    # line (a stack walk), thread and process names (the logging HOWTO's "Optimization").
    # Measured: 15 -> 11 us per line; a worker logs one line per execution.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
