"""HTTP/1.1 limits uvicorn's httptools protocol lacks: header size, header count, header-read time.

uvicorn with httptools reads headers of any size and waits for them forever
(`timeout_keep_alive` starts only after the first answer), so one connection can hold
megabytes or stay open for good before the app sees a request. `LimitedHttpToolsProtocol`
answers 431 past `max_header_bytes` or `max_header_count`, and closes a connection whose
headers do not arrive within `header_timeout` seconds of its start or of its last answer.

A malformed request pipelined behind valid ones is answered 400 only once those are
answered: uvicorn would answer 400 at once and close, dropping the answers of requests that
ran. Passed to uvicorn as `http=` (ingress/__main__.py); each server process reads its
limits once, in the app factory (`use_limits`).
"""

from __future__ import annotations

import asyncio
import http
from collections import deque
from typing import ClassVar

import httptools
import msgspec
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

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


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads (see the module docstring)."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    # Per connection: set in connection_made, reset for each request head.
    _head_timer: asyncio.TimerHandle | None = None
    _reading_head = True  # between a request's end (or the connection's start) and its headers
    _unparsed = 0  # bytes received while reading a head (the parser holds a partial header)
    _head_bytes = 0
    _head_count = 0
    _too_large = False
    _refusal: bytes | None = None  # the answer owed to a malformed request, after those before it
    _running: RequestResponseCycle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # nothing after a malformed request is read
        self._unset_keepalive_if_required()
        if self._reading_head:
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
                self._refuse(problem_bytes(400, "bad-request", "the request is not valid HTTP/1.1"))
            return
        if self._reading_head and self._unparsed > self.limits.max_header_bytes:
            self._refuse_head_too_large()

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._head_count = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_header_bytes:
            self._too_large = True
            raise _HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        self._head_bytes += len(name) + len(value)
        if self._head_count > self.limits.max_header_count or self._head_bytes > self.limits.max_header_bytes:
            self._too_large = True
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._reading_head = False
        self._unparsed = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        if self._refusal is not None and not self.pipeline and not self.transport.is_closing():
            # Every request before the malformed one is answered: now its 400.
            self.server_state.total_requests += 1
            self._send_and_close(self._refusal)
            return
        super().on_response_complete()

    # Refusals
    def _refuse_head_too_large(self) -> None:
        limits = self.limits
        detail = (
            f"the request line and headers exceed {limits.max_header_bytes} bytes"
            f" or {limits.max_header_count} headers"
        )
        self._refuse(problem_bytes(431, "headers-too-large", detail))

    def _refuse(self, answer: bytes) -> None:
        """Answer now, or once the requests before this one are answered."""
        self._cancel_head_timer()
        cycle = self.cycle
        if cycle is not None and cycle is not self._running and cycle.more_body:
            # The malformed request itself was queued behind another: it never runs.
            self.pipeline = deque(queued for queued in self.pipeline if queued[0] is not cycle)
        running = self._running
        if running is not None and not running.response_complete and not running.more_body:
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
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(_LINGER, self.transport.close)

    # The head timer
    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        running = self._running
        if running is not None and not running.response_complete:
            self._arm_head_timer()  # the next head is pipelined behind a call still running
            return
        if not self.transport.is_closing():
            self.transport.close()
