"""Retention: what the run log and the ingress's bookkeeping keep, and deleting the rest.

Every delete takes at most `batch` rows in one short statement (`for update skip locked`:
a row being written is skipped, not waited for), so recording goes on while a sweep runs
and no statement holds many locks for long. Only finished executions are deleted (found through `executions_by_status`); one
still running or retrying stays until it finishes. One sweep runs at a time, under the
RETENTION advisory lock (`sweep_as_leader`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from shared.db import locks
from shared.db.pool import Connection

FAMILIES = ("executions", "step_checkpoints", "samples", "rejected_calls", "idempotency_keys", "rate_limits")


@dataclass
class Sweep:
    """What one sweep deleted, per family, and in how many statements."""

    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAMILIES, 0))
    batches: int = 0

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


async def trigger_retentions(connection: Connection) -> dict[tuple[str, str], datetime.timedelta]:
    """The triggers whose file sets a `retention` of their own (stored as seconds)."""
    rows = await connection.fetch(
        "select workspace, name, (spec->>'retention')::float8 as seconds from triggers"
        " where deleted_at is null and jsonb_typeof(spec->'retention') = 'number'"
    )
    return {(r["workspace"], r["name"]): datetime.timedelta(seconds=r["seconds"]) for r in rows}


async def _batches(
    connection: Connection, sweep: Sweep, family: str, batch: int, sql: str, *args: object
) -> None:
    """Run a batched delete until it deletes less than a batch; `sql`'s last parameter is the batch size."""
    while True:
        done = int((await connection.execute(sql, *args, batch)).split()[-1])
        sweep.batches += 1
        sweep.deleted[family] += done
        if done < batch:
            return


async def sweep(
    connection: Connection,
    default: datetime.timedelta,
    batch: int,
    longest: datetime.timedelta | None = None,
) -> Sweep:
    """Delete what is past its age, `batch` rows a statement; what was deleted.

    A trigger's own `retention` counts up to `longest` (the deployment's cap: a tenant may
    keep its runs for less time than the default, or longer, but not without bound).
    """
    result = Sweep()
    custom = await trigger_retentions(connection)
    if longest is not None:
        custom = {trigger: min(keep, longest) for trigger, keep in custom.items()}
    for (workspace, trigger), keep in custom.items():
        await _batches(
            connection,
            result,
            "executions",
            batch,
            "delete from executions where id in (select id from executions where workspace = $1"
            " and trigger = $2 and received_at < now() - $3::interval"
            " and status in ('succeeded', 'failed', 'dead')"
            " limit $4 for update skip locked)",
            workspace,
            trigger,
            keep,
        )
    await _batches(
        connection,
        result,
        "executions",
        batch,
        "delete from executions where id in (select id from executions where"
        " received_at < now() - $1::interval and status in ('succeeded', 'failed', 'dead')"
        " and (workspace, trigger) not in (select * from unnest($2::text[], $3::text[]))"
        " limit $4 for update skip locked)",
        default,
        [w for w, _ in custom],
        [t for _, t in custom],
    )
    # A step's checkpoint serves retries and `--resume` of its run: it goes with the run, at the
    # latest when the longest retention a run may have has passed.
    await _batches(
        connection,
        result,
        "step_checkpoints",
        batch,
        "delete from step_checkpoints where (execution_id, step_id) in (select execution_id, step_id"
        " from step_checkpoints where recorded_at < now() - $1::interval limit $2 for update skip locked)",
        max(default, longest) if longest is not None else default,
    )
    await _batches(
        connection,
        result,
        "samples",
        batch,
        "delete from trigger_samples where (workspace, trigger) in (select workspace, trigger"
        " from trigger_samples where received_at < now() - $1::interval limit $2 for update skip locked)",
        default,
    )
    await _batches(
        connection,
        result,
        "rejected_calls",
        batch,
        "delete from rejected_calls where id in (select id from rejected_calls"
        " where at < now() - $1::interval limit $2 for update skip locked)",
        default,
    )
    await _batches(
        connection,
        result,
        "idempotency_keys",
        batch,
        "delete from idempotency_keys where (workspace, trigger, key) in (select workspace, trigger, key"
        " from idempotency_keys where expires_at < now() limit $1 for update skip locked)",
    )
    # A bucket whose theoretical arrival time has passed is full again: the same as no row.
    await _batches(
        connection,
        result,
        "rate_limits",
        batch,
        "delete from rate_limits where bucket in (select bucket from rate_limits"
        " where tat < now() limit $1 for update skip locked)",
    )
    return result


async def sweep_as_leader(
    connection: Connection,
    default: datetime.timedelta,
    batch: int,
    longest: datetime.timedelta | None = None,
) -> Sweep | None:
    """Sweep and record it if no other process is sweeping; None when one is."""
    if not await connection.fetchval("select pg_try_advisory_lock($1)", locks.RETENTION):
        return None
    try:
        result = await sweep(connection, default, batch, longest)
        await connection.executemany(
            "insert into retention_sweeps (family, swept_at, deleted, deleted_total) values ($1, now(), $2, $2)"
            " on conflict (family) do update set swept_at = now(), deleted = $2,"
            " deleted_total = retention_sweeps.deleted_total + $2",
            list(result.deleted.items()),
        )
        return result
    finally:
        await connection.execute("select pg_advisory_unlock($1)", locks.RETENTION)


@dataclass(frozen=True)
class LastSweep:
    """What the last sweep did to one family, for `hookline status`."""

    family: str
    swept_at: datetime.datetime
    deleted: int
    deleted_total: int


async def last_sweeps(connection: Connection) -> list[LastSweep]:
    """The last sweep of every family (none before the first sweep)."""
    rows = await connection.fetch(
        "select family, swept_at, deleted, deleted_total from retention_sweeps order by family"
    )
    return [LastSweep(r["family"], r["swept_at"], r["deleted"], r["deleted_total"]) for r in rows]
