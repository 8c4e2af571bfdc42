-- Delivery: retried runs, ordered lane layouts (with their generations) and stopped lanes.

-- `retrying`: the last attempt failed and another one is scheduled.
alter table executions drop constraint executions_status_check;
alter table executions add constraint executions_status_check
    check (status in ('running', 'retrying', 'succeeded', 'failed', 'dead'));

-- The ordered queues the dispatcher laid out on the broker, per trigger and generation.
-- A new generation starts when a trigger's ordering changes (partition count, key); the
-- older ones drain (workers consume only the oldest) and are deleted once empty.
create table lane_layouts (
    workspace   text not null,
    trigger     text not null,
    generation  int not null,
    partitions  int not null,     -- 0: one lane (`ordered: true`); N: N hash partitions
    key         text,             -- the ordering key expression of a partitioned layout
    draining    boolean not null default false,
    created_at  timestamptz not null default now(),
    primary key (workspace, trigger, generation)
);

-- A lane stopped on a message that ran out of attempts (`on_exhausted: stop`). The worker
-- holds the message unacknowledged, so the lane cannot move, until an operator sets
-- `resume` (`hookline lanes resume`): `retry` runs it again, `skip` dead-letters it.
create table lane_holds (
    queue        text primary key,
    workspace    text not null,
    trigger      text not null,
    execution_id uuid not null,
    error        text,
    held_at      timestamptz not null default now(),
    resume       text check (resume in ('retry', 'skip')),
    resumed_at   timestamptz
);

create function notify_lanes() returns trigger language plpgsql as $$
begin
    perform pg_notify('hookline_lanes', tg_table_name);
    return null;
end $$;

create trigger lane_layouts_changed after insert or update or delete or truncate on lane_layouts
    for each statement execute function notify_lanes();
create trigger lane_holds_changed after insert or update or delete or truncate on lane_holds
    for each statement execute function notify_lanes();
