"""A local HTTP target that records how many calls it serves at once, and when each started.

`GET /run?key=K&ms=N` holds the call N milliseconds. The target counts the calls in
progress, overall and per key, keeps the highest counts seen, and the start time of every
call, so a test checks concurrency and throttle limits as the target saw them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Recorder:
    """What the target saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.now_by_key: Counter[str] = Counter()
        self.most_by_key: Counter[str] = Counter()
        self.starts: list[tuple[float, str]] = []  # (monotonic time, key)
        self.base_url = ""

    def enter(self, key: str) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.now_by_key[key] += 1
            self.most_by_key[key] = max(self.most_by_key[key], self.now_by_key[key])
            self.starts.append((time.monotonic(), key))

    def leave(self, key: str) -> None:
        with self.lock:
            self.now -= 1
            self.now_by_key[key] -= 1

    def most_in_window(self, seconds: float = 1.0) -> int:
        """The most calls that started within any window of `seconds`."""
        with self.lock:
            times = sorted(t for t, _ in self.starts)
        best, first = 0, 0
        for last, at in enumerate(times):
            while at - times[first] >= seconds:
                first += 1
            best = max(best, last - first + 1)
        return best


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            key = query.get("key", [""])[0]
            recorder.enter(key)
            try:
                time.sleep(int(query.get("ms", ["0"])[0]) / 1000)
            finally:
                recorder.leave(key)
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    return Handler


@contextmanager
def running_recorder() -> Iterator[Recorder]:
    """A Recorder on a free port of 127.0.0.1 until the block ends."""
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    server.daemon_threads = True
    recorder.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="concurrency-target", daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
