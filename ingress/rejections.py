"""The last refused calls of each trigger, kept so an operator can see why a sender fails.

Refusals are written in the background in batches, at most `per_second` per process (a
flood of bad calls must not become a flood of inserts); only the newest `keep` per trigger
are kept. Credentials are never recorded (nor the key presented or the signature expected: a row's
`hint` says only what the sender can fix); bodies only when the trigger asks for them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from ingress.background import BackgroundWriter
from shared.db.pool import DB_ERRORS

log = logging.getLogger(__name__)

REDACTED = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})
MAX_BODY = 4096
MAX_HEADER = 512
MAX_HEADERS = 50  # headers kept per row, at most
HEADER_BUDGET = 8192  # bytes of header names and values kept per row, at most
LEFT_OUT = "(left out)"  # key of the row's count of the headers it does not keep


@dataclass(frozen=True)
class Rejection:
    """One refused call, ready to be written."""

    workspace: str
    trigger: str
    at: float
    status: int
    problem_type: str
    reason: str
    method: str
    content_type: str | None
    headers: dict[str, str]
    body: bytes | None
    body_size: int | None
    hint: dict[str, Any] | None = None  # what the sender can fix (ingress/auth/), never a secret


def redacted_headers(headers: Mapping[str, str], secret_names: frozenset[str]) -> dict[str, str]:
    """Headers as an operator may see them: credentials masked, values, count and size bounded.

    The first `MAX_HEADERS` within `HEADER_BUDGET` bytes are kept, the number of the others
    under `LEFT_OUT`: a call with thousands of headers makes a small row.
    """
    out: dict[str, str] = {}
    budget = HEADER_BUDGET
    left_out = 0
    for name, value in headers.items():
        lower = name.lower()[:MAX_HEADER]
        kept = "<redacted>" if lower in REDACTED or lower in secret_names else value[:MAX_HEADER]
        size = len(lower) + len(kept)
        if len(out) >= MAX_HEADERS or size > budget:
            left_out += 1
            continue
        budget -= size
        out[lower] = kept
    if left_out:
        out[LEFT_OUT] = str(left_out)
    return out


class RejectionLog(BackgroundWriter):
    """Buffers rejections and writes them every `interval` seconds."""

    def __init__(
        self, pool: asyncpg.Pool, keep: int = 50, per_second: int = 50, interval: float = 0.5
    ) -> None:
        super().__init__("rejections", interval)
        self._pool = pool
        self._keep = keep
        self._per_second = per_second
        self._buffer: list[Rejection] = []
        self._window = (0, 0)  # (second, count)

    def add(self, rejection: Rejection) -> None:
        """Keep a rejection unless this second's quota is used up."""
        second = int(time.monotonic())
        current, count = self._window
        count = count + 1 if current == second else 1
        self._window = (second, count)
        if count <= self._per_second:
            self._buffer.append(rejection)

    async def write(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        rows = [
            (
                r.workspace,
                r.trigger,
                r.at,
                r.status,
                r.problem_type,
                r.reason,
                r.method,
                r.content_type,
                r.headers,
                r.body,
                r.body_size,
                r.hint,
            )
            for r in batch
        ]
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.executemany(
                    "insert into rejected_calls (workspace, trigger, at, status, problem_type, reason, method,"
                    " content_type, headers, body, body_size, hint)"
                    " values ($1, $2, to_timestamp($3), $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    rows,
                )
                for workspace, trigger in {(r.workspace, r.trigger) for r in batch}:
                    await connection.execute(
                        "delete from rejected_calls where workspace = $1 and trigger = $2 and id <"
                        " (select id from rejected_calls where workspace = $1 and trigger = $2"
                        "  order by id desc offset $3 limit 1)",
                        workspace,
                        trigger,
                        self._keep - 1,
                    )
        except DB_ERRORS as exc:
            log.warning("%d rejected calls not recorded (%s)", len(batch), type(exc).__name__)
