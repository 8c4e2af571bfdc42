"""A small system for the examples to call: customers and a Petstore-like pet API (stdlib only).

`python -m shared.devstack.demo_target --port 8099` (`hookline up` starts it). Every call but
`GET /healthz` needs the header `api-key` (the value of `--api-key`, default the
DEMO_TARGET_KEY variable), as the Petstore API of elastic.io's tutorial does. Data lives in
memory and is lost on exit.

    POST /customers {"name", "external_id"?}  -> 201 {"id": "cus_1", ...}
    GET  /customers/{id}                      -> 200 | 404
    POST /pets {"name", "status"}             -> 200 {"id": 1, "name", "status"}
    GET  /pets/{id}                           -> 200 | 404
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PET_STATUSES = ("available", "pending", "sold")


class Store:
    """The target's records, shared by the server's threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.customers: dict[str, dict[str, Any]] = {}
        self.pets: dict[str, dict[str, Any]] = {}

    def add(self, table: dict[str, dict[str, Any]], record: dict[str, Any], prefix: str) -> dict[str, Any]:
        with self.lock:
            number = len(table) + 1
            record = {"id": f"{prefix}{number}" if prefix else number, **record}
            table[str(record["id"])] = record
            return record


class DemoTarget(ThreadingHTTPServer):
    """The HTTP server with its store and API key."""

    daemon_threads = True

    def __init__(self, port: int, api_key: str, host: str = "127.0.0.1") -> None:
        super().__init__((host, port), Handler)
        self.api_key = api_key
        self.store = Store()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class Handler(BaseHTTPRequestHandler):
    """Routes the few endpoints; answers JSON."""

    server: DemoTarget

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(HTTPStatus.OK, {"ok": True})
            return
        if not self._authorised():
            return
        kind, _, key = self.path.strip("/").partition("/")
        table = {"customers": self.server.store.customers, "pets": self.server.store.pets}.get(kind)
        record = table.get(key) if table is not None else None
        if record is None:
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"no {self.path}"})
        else:
            self._answer(HTTPStatus.OK, record)

    def do_POST(self) -> None:
        if not self._authorised():
            return
        body = self._json()
        if not isinstance(body, dict):
            self._answer(HTTPStatus.BAD_REQUEST, {"error": "send a JSON object"})
        elif not isinstance(body.get("name"), str) or not body["name"]:
            self._answer(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": "name is required"})
        elif self.path == "/customers":
            record = {"name": body["name"], "external_id": body.get("external_id")}
            self._answer(
                HTTPStatus.CREATED, self.server.store.add(self.server.store.customers, record, "cus_")
            )
        elif self.path == "/pets":
            if body.get("status") not in PET_STATUSES:
                self._answer(
                    HTTPStatus.BAD_REQUEST, {"error": f"status must be one of {', '.join(PET_STATUSES)}"}
                )
                return
            record = {"name": body["name"], "status": body["status"]}
            self._answer(HTTPStatus.OK, self.server.store.add(self.server.store.pets, record, ""))
        else:
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"no {self.path}"})

    def _authorised(self) -> bool:
        given = self.headers.get("api-key", "")
        if hmac.compare_digest(given.encode(), self.server.api_key.encode()):
            return True
        self._answer(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong api-key header"})
        return False

    def _json(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        try:
            return json.loads(self.rfile.read(min(length, 1_048_576)) or b"null")
        except ValueError:
            return None

    def _answer(self, status: HTTPStatus, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: `hookline up` shares the terminal with the services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.devstack.demo_target", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--api-key", default=os.environ.get("DEMO_TARGET_KEY", ""))
    args = parser.parse_args(argv)
    if not args.api_key:
        print("demo target: give --api-key or set DEMO_TARGET_KEY", file=sys.stderr)
        return 2
    server = DemoTarget(args.port, args.api_key)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
