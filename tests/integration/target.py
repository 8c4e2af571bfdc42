"""A local HTTP target for workflows' `http` steps: slow on request, failing on request.

`GET /work/N` answers 200 after N milliseconds (a run that takes time, so a worker can
be killed in the middle of it); `GET /fail/NAME` answers 500 while NAME is in `failing`.
Served from threads, so many workers may call it at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class Target:
    """The server's state, shared with the test."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.calls = 0
        self.lock = threading.Lock()
        self.base_url = ""

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def _handler(target: Target) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every call.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            with target.lock:
                target.calls += 1
            if url.path.startswith("/work/"):
                time.sleep(int(url.path.removeprefix("/work/")) / 1000)
                self._answer(200, b'{"ok": true}')
            elif url.path.startswith("/fail/"):
                failing = url.path.removeprefix("/fail/") in target.failing
                self._answer(500 if failing else 200, b'{"failing": true}' if failing else b'{"ok": true}')
            else:
                self._answer(404, b"{}")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A worker killed mid-call drops its connection: expected here, not worth a traceback.
        pass


@contextmanager
def running_target() -> Iterator[Target]:
    """A Target on a free port of 127.0.0.1 until the block ends."""
    target = Target()
    server = _Server(("127.0.0.1", 0), _handler(target))
    server.daemon_threads = True
    target.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="http-target", daemon=True)
    thread.start()
    try:
        yield target
    finally:
        server.shutdown()
        server.server_close()
