"""The rejected-calls log on PostgreSQL: a flood is sampled, and only the newest per trigger stay."""

from __future__ import annotations

import time

from ingress.rejections import Rejection, RejectionLog, redacted_headers
from shared.db.pool import Connection, create_pool


def _rejection(workspace: str, n: int, body: bytes | None = None) -> Rejection:
    return Rejection(
        workspace=workspace,
        trigger="t",
        at=time.time() + n / 1000,
        status=401,
        problem_type="unauthorized",
        reason=f"mismatch {n}",
        method="POST",
        content_type="application/json",
        headers=redacted_headers(
            {"X-Hub-Signature-256": "sha256=abc", "Authorization": "Bearer s3cret", "X-Request-Id": f"r{n}"},
            frozenset({"x-hub-signature-256"}),
        ),
        body=body,
        body_size=len(body) if body is not None else None,
    )


async def test_a_flood_is_sampled_and_only_the_newest_are_kept_without_credentials(
    database_url: str, db: Connection, workspace: str
) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        log = RejectionLog(pool, keep=5, per_second=8, interval=3600)  # flushed by close() below
        for n in range(20):  # one second's flood: 8 are taken, the rest dropped
            log.add(_rejection(workspace, n, body=b'{"n": 1}' if n == 7 else None))
        await log.close()
    finally:
        await pool.close()
    rows = await db.fetch(
        "select reason, headers, body from rejected_calls where workspace = $1 order by at", workspace
    )
    # 8 sampled, the newest 5 of them kept.
    assert [r["reason"] for r in rows] == [f"mismatch {n}" for n in range(3, 8)]
    assert {r["headers"]["authorization"] for r in rows} == {"<redacted>"}
    assert {r["headers"]["x-hub-signature-256"] for r in rows} == {"<redacted>"}
    assert rows[-1]["headers"]["x-request-id"] == "r7"
    assert [r["body"] for r in rows] == [None, None, None, None, b'{"n": 1}']
