-- The operator surface: paused triggers, management API tokens, run-log listing indexes.

-- A paused trigger (no row: running). While `resumed_at` is null its calls are held on the
-- broker (async) or refused with 503 (request-response). Once resumed, the dispatcher
-- empties the trigger's hold queue into the work queue and then deletes the row.
create table trigger_pauses (
    workspace   text not null,
    trigger     text not null,
    paused_at   timestamptz not null default now(),
    resumed_at  timestamptz,
    primary key (workspace, trigger)
);

-- Ingresses and the dispatcher follow the registry channel, workers the lanes channel
-- (an ordered trigger is paused by its workers letting go of its lanes).
create function notify_pauses() returns trigger language plpgsql as $$
begin
    perform pg_notify('hookline_registry', tg_table_name);
    perform pg_notify('hookline_lanes', tg_table_name);
    return null;
end $$;

create trigger trigger_pauses_changed after insert or update or delete or truncate on trigger_pauses
    for each statement execute function notify_pauses();

-- Management API tokens: `workspace` null is an admin token (every workspace). Random, so a
-- SHA-256 digest is a safe and fast lookup; the token itself is never stored.
create table api_tokens (
    id          uuid primary key,
    workspace   text references workspaces (name) on delete cascade,
    label       text not null,
    prefix      text not null,
    digest      bytea not null unique,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);

-- The run log is listed newest first by id (UUIDv7: time-ordered), per workspace or trigger.
create index executions_by_workspace_id on executions (workspace, id desc);
create index executions_by_trigger_id on executions (workspace, trigger, id desc);
