-- Schedule triggers (dispatcher/schedules.py): one row per live trigger with a `schedule`,
-- kept in line with the registry by the leading dispatcher (SCHEDULES advisory lock).
-- `next_at` is the earliest tick neither published nor skipped (null: a cron that never
-- fires again); `last_tick` the latest one published. The leader locks a due row, publishes
-- its ticks with confirms, then advances it, in one transaction: a tick is published twice
-- only if the leader dies between the broker's confirm and the commit, and both copies carry
-- the same execution id (derived from the tick), of which a worker runs one.
-- `retry_at`: a publish failed (queue full, not routed yet); other rows go first until then.
create table schedules (
    workspace    text not null,
    trigger      text not null,
    schedule     jsonb not null,
    next_at      timestamptz,
    last_tick    timestamptz,
    published_at timestamptz,
    retry_at     timestamptz,
    last_error   text,
    primary key (workspace, trigger)
);
create index schedules_by_next on schedules (next_at);
