"""The refused calls of a trigger read back (ingress/rejections.py writes them), newest first.

What is shown is what a sender can act on: time, status, reason and the row's hint (for a
signature: the header, the scheme expected, the timestamp's skew). The headers are the
redacted ones that were stored; no row holds a secret, the presented key or the expected
signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db.pool import Connection
from shared.errors import NotFound


@dataclass(frozen=True)
class RejectedCall:
    """One refused call as an operator sees it."""

    id: int
    at: datetime
    status: int
    problem_type: str
    reason: str
    hint: str  # one sentence for the sender
    detail: dict[str, Any]  # the hint's fields: header, expected, skew_seconds
    method: str
    content_type: str | None
    headers: dict[str, str]
    body_size: int | None


@dataclass(frozen=True)
class RejectedPage:
    """A page of refused calls and the cursor of the next, older, page (None: the last)."""

    items: list[RejectedCall]
    next_cursor: int | None


async def list_rejected(
    connection: Connection, workspace: str, trigger: str, limit: int = 50, before: int | None = None
) -> RejectedPage:
    """The trigger's refused calls, newest first, `limit` a page, older than `before` (an id)."""
    known = await connection.fetchval(
        "select exists (select 1 from triggers where workspace = $1 and name = $2)", workspace, trigger
    )
    if not known:
        raise NotFound(f"no trigger {workspace}/{trigger}")
    rows = await connection.fetch(
        "select id, at, status, problem_type, reason, hint, method, content_type, headers, body_size"
        " from rejected_calls where workspace = $1 and trigger = $2 and ($3::bigint is null or id < $3)"
        " order by id desc limit $4",
        workspace,
        trigger,
        before,
        limit + 1,
    )
    items = [_call(r) for r in rows[:limit]]
    return RejectedPage(items, items[-1].id if len(rows) > limit else None)


def _call(row: Any) -> RejectedCall:
    hint = dict(row["hint"] or {})
    message = str(hint.pop("message", row["reason"]))
    hint.pop("reason", None)
    return RejectedCall(
        id=row["id"],
        at=row["at"],
        status=row["status"],
        problem_type=row["problem_type"],
        reason=str((row["hint"] or {}).get("reason", row["reason"])),
        hint=message,
        detail=hint,
        method=row["method"],
        content_type=row["content_type"],
        headers=row["headers"],
        body_size=row["body_size"],
    )
