"""A local HTTP target for workflows' `http` steps: slow on request, failing on request.

`GET /work/N` answers 200 after N milliseconds (a run that takes time, so a worker can
be killed in the middle of it); `GET /fail/NAME` answers 500 while NAME is in `failing`.
Every POST is a recorder: kept in `posts` (path, Idempotency-Key, body, trace context), answered 500 while
its path has failures left in `fail_times`, after N milliseconds for `/slow/N`, else 201.
Served from threads, so many workers may call it at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Post:
    """One POST the target received."""

    path: str
    idempotency_key: str | None
    body: str
    traceparent: str | None = None  # the W3C trace context it came with (tracing on)
    tracestate: str | None = None
    client: str | None = None  # the address it came from (a test's namespace tells its hosts apart)


class Target:
    """The server's state, shared with the test."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.fail_times: dict[str, int] = {}
        self.posts: list[Post] = []
        self.calls = 0
        self.lock = threading.Lock()
        self.base_url = ""

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def posts_to(self, path: str) -> list[Post]:
        """The POSTs received at `path`, in order."""
        with self.lock:
            return [p for p in self.posts if p.path == path]


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

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
            with target.lock:
                target.posts.append(
                    Post(
                        path,
                        self.headers.get("idempotency-key"),
                        body,
                        self.headers.get("traceparent"),
                        self.headers.get("tracestate"),
                        self.client_address[0],
                    )
                )
                count = sum(1 for p in target.posts if p.path == path)
                failures = target.fail_times.get(path, 0)
                if failures:
                    target.fail_times[path] = failures - 1
            if path.startswith("/slow/"):
                time.sleep(int(path.removeprefix("/slow/")) / 1000)
            answer = {"path": path, "call": count}
            self._answer(500 if failures else 201, json.dumps(answer).encode())

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
def running_target(host: str = "127.0.0.1") -> Iterator[Target]:
    """A Target on a free port of `host` until the block ends."""
    target = Target()
    server = _Server((host, 0), _handler(target))
    server.daemon_threads = True
    target.base_url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="http-target", daemon=True)
    thread.start()
    try:
        yield target
    finally:
        server.shutdown()
        server.server_close()
