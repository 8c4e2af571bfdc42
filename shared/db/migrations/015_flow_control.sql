-- Flow control per trigger (worker/flow.py), shared by every worker.
-- `concurrency`: one row per slot in use. A worker claims a free slot (absent, or its lease
-- expired) in one statement and renews the lease while the run lasts, so the slots of a
-- killed worker free themselves when their leases run out. `key` is '' for a plain limit,
-- else the value of the trigger's key expression (slots per key value).
create table flow_slots (
    workspace  text not null,
    trigger    text not null,
    key        text not null,
    slot       integer not null,
    holder     uuid not null,
    expires_at timestamptz not null,
    primary key (workspace, trigger, key, slot)
);
create index flow_slots_by_holder on flow_slots (holder);

-- `throttle`: one token bucket per trigger, refilled by the time since it was last taken from.
create table flow_buckets (
    workspace  text not null,
    trigger    text not null,
    tokens     double precision not null,
    updated_at timestamptz not null,
    primary key (workspace, trigger)
);
