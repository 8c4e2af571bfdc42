"""Just enough of PostgreSQL's wire protocol to tell "accepting queries" and run one.

A TCP connect succeeds while the server still recovers ("the database system is starting
up"), so readiness means a completed startup handshake. Trust authentication only: these
are the private servers `LocalPostgres` creates.
"""

from __future__ import annotations

import socket
import struct

from shared.localservers.ports import LOOPBACK

_PROTOCOL_3_0 = 196608


class PgError(Exception):
    """Raised when the server answers with an ErrorResponse; carries its SQLSTATE."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(f"{sqlstate}: {message}")
        self.sqlstate = sqlstate


def simple_query(port: int, sql: str, *, user: str, database: str, timeout: float = 5) -> int:
    """Run `sql` (simple query protocol) and return the number of rows it produced."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        params = f"user\0{user}\0database\0{database}\0\0".encode()
        sock.sendall(struct.pack("!ii", 8 + len(params), _PROTOCOL_3_0) + params)
        _read_until_ready(sock)
        query = sql.encode() + b"\0"
        sock.sendall(b"Q" + struct.pack("!i", 4 + len(query)) + query)
        rows = _read_until_ready(sock)
        sock.sendall(b"X" + struct.pack("!i", 4))
        return rows


def _read_until_ready(sock: socket.socket) -> int:
    """Read messages up to ReadyForQuery; count DataRows, raise an ErrorResponse."""
    rows = 0
    error: PgError | None = None
    while True:
        try:
            kind, body = _message(sock)
        except ConnectionError:
            if error is not None:
                raise error from None  # a refused startup ends with the server hanging up
            raise
        if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
            raise PgError("28000", "the server asks for a password; expected trust")
        if kind == b"E":
            error = error or _error(body)
        elif kind == b"D":
            rows += 1
        elif kind == b"Z":
            if error is not None:
                raise error
            return rows


def _message(sock: socket.socket) -> tuple[bytes, bytes]:
    head = _exactly(sock, 5)
    kind, size = head[:1], struct.unpack("!i", head[1:])[0]
    return kind, _exactly(sock, size - 4)


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        data += chunk
    return data


def _error(body: bytes) -> PgError:
    fields = {part[:1]: part[1:].decode(errors="replace") for part in body.split(b"\0") if part}
    return PgError(fields.get(b"C", "?????"), fields.get(b"M", "unknown error"))
