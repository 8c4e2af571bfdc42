"""Why a connection to RabbitMQ failed, in words an operator can act on (a TLS refusal above all).

aiormq wraps a TLS failure in `AMQPConnectionError(*ssl_error.args)`; the `ssl` error it came
from, with the certificate's own complaint, is its `__cause__`.
"""

from __future__ import annotations

import logging
import ssl


def connect_failure(exc: BaseException) -> str:
    """A few words on a failed connect: the TLS reason when there is one, else the error's name."""
    cause = tls_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"the broker's certificate failed verification: {cause.verify_message}"
    if cause is not None:
        return f"the TLS handshake with the broker failed: {cause.reason or cause}"
    return type(exc).__name__


def tls_cause(exc: BaseException) -> ssl.SSLError | None:
    """The `ssl` error behind `exc` (itself, its cause or its context), if any."""
    seen: BaseException | None = exc
    for _ in range(5):  # a short chain: aiormq's error, then the ssl one
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class _TransportErrorFilter(logging.Filter):
    """Drops aiormq's own line for a failed connect, which the caller reports in its place."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error when creating transport")


_FILTER = _TransportErrorFilter()


def report_connect_failures_once() -> None:
    """Let hookline's own line be the only one per failed connect (aiormq logs each at error level).

    Without it a command-line tool prints aiormq's line before its own one-line message, and a
    service logs every retry twice.
    """
    logger = logging.getLogger("aiormq.connection")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
