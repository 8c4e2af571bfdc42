"""Flow-control state in PostgreSQL: concurrency slot leases and throttle token buckets.

Every statement here is one atomic step, so workers on any number of machines share a
limit without a coordinator: a slot is claimed by a single INSERT ... ON CONFLICT that only
takes a row that is absent or expired (two workers racing for the same slot: the second
sees the first's row live and gets nothing), a token is taken by a single upsert that
refills the bucket and takes from it only when a whole token is there.
"""

from __future__ import annotations

import uuid
from typing import Any

from shared.db.pool import Connection

# The free slots in random order: claimers racing for a limit rarely pick the same one.
_CLAIM = """
insert into flow_slots (workspace, trigger, key, slot, holder, expires_at)
select $1, $2, $3, s, $5, now() + make_interval(secs => $6)
from generate_series(0, $4 - 1) as s
where not exists (
    select 1 from flow_slots f
    where f.workspace = $1 and f.trigger = $2 and f.key = $3 and f.slot = s and f.expires_at > now()
)
order by random()
limit 1
on conflict (workspace, trigger, key, slot) do update
    set holder = excluded.holder, expires_at = excluded.expires_at
    where flow_slots.expires_at <= now()
returning slot
"""

_TAKE = """
insert into flow_buckets as b (workspace, trigger, tokens, updated_at)
values ($1, $2, $3 - 1, now())
on conflict (workspace, trigger) do update
    set tokens = least($3, b.tokens + extract(epoch from now() - b.updated_at) * $4) - 1,
        updated_at = now()
    where least($3, b.tokens + extract(epoch from now() - b.updated_at) * $4) >= 1
returning tokens
"""

_LEVEL = """
select least($3, tokens + extract(epoch from now() - updated_at) * $4)
from flow_buckets where workspace = $1 and trigger = $2
"""


async def claim_slot(
    connection: Connection,
    workspace: str,
    trigger: str,
    key: str,
    limit: int,
    holder: uuid.UUID,
    lease: float,
) -> int | None:
    """A free slot of the (trigger, key) limit, leased to `holder` for `lease` seconds; None: all taken."""
    slot: int | None = await connection.fetchval(_CLAIM, workspace, trigger, key, limit, holder, lease)
    return slot


async def release_slot(
    connection: Connection, workspace: str, trigger: str, key: str, holder: uuid.UUID
) -> None:
    """Give the slot back (only the holder's: a lease that expired and was taken is not ours)."""
    await connection.execute(
        "delete from flow_slots where workspace = $1 and trigger = $2 and key = $3 and holder = $4",
        workspace,
        trigger,
        key,
        holder,
    )


async def renew_slots(connection: Connection, holders: list[uuid.UUID], lease: float) -> int:
    """Extend the leases of runs still going; how many were renewed."""
    if not holders:
        return 0
    result: str = await connection.execute(
        "update flow_slots set expires_at = now() + make_interval(secs => $2) where holder = any($1::uuid[])",
        holders,
        lease,
    )
    return int(result.rsplit(" ", 1)[-1])


async def take_token(
    connection: Connection, workspace: str, trigger: str, burst: int, rate_per_second: float
) -> float | None:
    """Take one token from the trigger's bucket (`burst` deep, refilled at the rate): None when
    there is none, else the tokens left."""
    left: float | None = await connection.fetchval(_TAKE, workspace, trigger, float(burst), rate_per_second)
    return left


async def token_wait(
    connection: Connection, workspace: str, trigger: str, burst: int, rate_per_second: float
) -> float:
    """Seconds until the bucket holds a whole token again (0 when it does)."""
    level = await connection.fetchval(_LEVEL, workspace, trigger, float(burst), rate_per_second)
    if level is None:
        return 0.0
    return max(0.0, (1 - float(level)) / rate_per_second)


async def unordered_triggers(connection: Connection) -> list[tuple[str, str, Any, Any]]:
    """(workspace, name, concurrency, throttle) of every live unordered trigger, as stored."""
    rows = await connection.fetch(
        "select workspace, name, spec->'concurrency' as concurrency, spec->'throttle' as throttle"
        " from triggers where deleted_at is null"
        " and coalesce(spec->>'ordered', 'false') = 'false'"
    )
    return [(r["workspace"], r["name"], r["concurrency"], r["throttle"]) for r in rows]
