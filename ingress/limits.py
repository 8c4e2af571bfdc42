"""HTTP/1.1 limits uvicorn's httptools protocol lacks: header size, header count, header-read time.

uvicorn with httptools reads headers of any size and waits for them forever
(`timeout_keep_alive` starts only after the first answer), so one connection can hold
megabytes or stay open for good before the app sees a request. `LimitedHttpToolsProtocol`
answers 431 past `max_header_bytes` or `max_header_count`, and closes a connection whose
headers do not arrive within `header_timeout` seconds of its start or of the first byte of
its next request (uvicorn's keep-alive timeout covers the idle time between requests).

Past `limit_concurrency` it answers 503 as a problem document (uvicorn's is plain text).
A malformed request pipelined behind valid ones is answered 400 only once those are
answered: uvicorn would answer 400 at once and close, dropping the answers of requests that
ran. Passed to uvicorn as `http=` (ingress/__main__.py); each server process reads its
limits once, in the app factory (`use_limits`).
"""

from __future__ import annotations

import asyncio
import http
from collections import deque
from typing import Any, ClassVar

import httptools
import msgspec
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ingress import metrics
from shared.settings import Settings


class HttpLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one request's head may hold, and how long it may take to arrive."""

    max_header_bytes: int = 65_536
    max_header_count: int = 100
    header_timeout: float = 10.0

    @classmethod
    def of(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_header_count=settings.max_header_count,
            header_timeout=settings.header_timeout,
        )


def use_limits(limits: HttpLimits) -> None:
    """Set the limits of this process's connections (before it serves)."""
    LimitedHttpToolsProtocol.limits = limits


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop reading a request head past the limits."""


_encode = msgspec.json.Encoder().encode
_LINGER = 1.0  # seconds a refused connection is drained before it is closed


def problem_bytes(status: int, slug: str, detail: str) -> bytes:
    """A whole HTTP/1.1 answer with an RFC 9457 body that closes the connection."""
    title = http.HTTPStatus(status).phrase
    body = _encode({"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail})
    head = (
        f"HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_TOO_BUSY = _encode(
    {
        "type": "/problems/too-busy",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "this ingress process has as many connections and calls as it takes; retry shortly",
    }
)


async def _too_busy(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """The answer past `limit_concurrency` (uvicorn's own is plain text)."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(_TOO_BUSY)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _TOO_BUSY, "more_body": False})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads (see the module docstring).

    Kept cheap per request: counters in the parser callbacks, and one timer per connection
    that checks when the pending head started (no timer armed and cancelled per request).
    """

    limits: ClassVar[HttpLimits] = HttpLimits()

    # Per connection, reset for each request head.
    _head_timer: asyncio.TimerHandle | None = None
    _head_started: float | None = None  # loop time a head began arriving; None once it is read
    _unparsed = 0  # bytes received while a head arrives (the parser holds a partial header)
    _head_bytes = 0
    _head_count = 0
    _too_large = False
    _refusal: bytes | None = None  # the answer owed to a malformed request, after those before it

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Checked in on_headers_complete, where uvicorn's own check answers in plain text.
        self._concurrency, self.limit_concurrency = self.limit_concurrency, None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_started = self.loop.time()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._check_head)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # nothing after a malformed request is read
        self._unset_keepalive_if_required()
        if self._head_started is not None:
            self._unparsed += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._too_large:
                self._refuse_head_too_large()
            else:
                self.logger.warning("Invalid HTTP request received.")
                metrics.REJECTED.labels("bad-request").inc()
                self._refuse(problem_bytes(400, "bad-request", "the request is not valid HTTP/1.1"))
            return
        if self._head_started is not None and self._unparsed > self.limits.max_header_bytes:
            self._refuse_head_too_large()

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._head_count = 0
        if self._head_started is None:
            self._head_started = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_header_bytes:
            self._too_large = True
            raise _HeadTooLarge
        self.url += url  # as uvicorn's on_url (inlined: this runs for every request)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        self._head_bytes += len(name) + len(value)
        if self._head_count > self.limits.max_header_count or self._head_bytes > self.limits.max_header_bytes:
            self._too_large = True
            raise _HeadTooLarge
        # As uvicorn's on_header (inlined: this runs for every header).
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_started = None
        self._unparsed = 0
        limit = self._concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            # uvicorn's limit_concurrency, answered as a problem document with Retry-After.
            metrics.REJECTED.labels("too-busy").inc()
            app, self.app = self.app, _too_busy
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        if self._refusal is not None and not self.pipeline and not self.transport.is_closing():
            # Every request before the malformed one is answered: now its refusal.
            self.server_state.total_requests += 1
            self._send_and_close(self._refusal)
            return
        super().on_response_complete()

    # Refusals
    def _refuse_head_too_large(self) -> None:
        metrics.REJECTED.labels("headers-too-large").inc()
        limits = self.limits
        detail = (
            f"the request line and headers exceed {limits.max_header_bytes} bytes"
            f" or {limits.max_header_count} headers"
        )
        self._refuse(problem_bytes(431, "headers-too-large", detail))

    def _refuse(self, answer: bytes) -> None:
        """Answer now, or once the requests before this one are answered."""
        self._head_started = None
        cycle = self.cycle  # the newest request whose headers were read
        in_flight = cycle is not None and not cycle.response_complete
        if in_flight and cycle.more_body:
            # The malformed part is this request's body: it never runs if it still waits
            # behind another; if it runs, the closed connection tells it the caller is gone.
            queued = deque(item for item in self.pipeline if item[0] is not cycle)
            in_flight = len(queued) < len(self.pipeline)
            self.pipeline = queued
        if in_flight:
            self._refusal = answer
            self.flow.pause_reading()
            return
        self._send_and_close(answer)

    def _send_and_close(self, answer: bytes) -> None:
        """Answer, then close after a short linger.

        Closing at once, with the sender's bytes unread, makes the kernel reset the
        connection, which can discard the answer before the sender reads it. So: send the
        answer and a FIN, throw away what still comes, and close when the sender does or
        after `_LINGER` seconds.
        """
        self._refusal = b""  # nothing more is parsed
        if self.transport.is_closing():
            return  # the sender is gone
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(_LINGER, self.transport.close)

    # The head timer
    def _check_head(self) -> None:
        """Close the connection if a head has been arriving for `header_timeout`; else check again."""
        timeout = self.limits.header_timeout
        started = self._head_started
        now = self.loop.time()
        cycle = self.cycle
        if started is not None and now - started >= timeout:
            if cycle is None or cycle.response_complete:
                self._head_timer = None
                if not self.transport.is_closing():
                    self.transport.close()
                return
            # A head pipelined behind a call still running: its time starts after that answer.
            started = self._head_started = now
        self._head_timer = self.loop.call_later(
            timeout if started is None else started + timeout - now, self._check_head
        )
