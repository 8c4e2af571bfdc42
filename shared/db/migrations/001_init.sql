-- The trigger registry, API keys and the run log.

create table workspaces (
    name        text primary key,
    description text not null default '',
    created_at  timestamptz not null default now()
);

-- The current version of each trigger; every version ever applied is in trigger_versions.
create table triggers (
    id          bigserial primary key,
    workspace   text not null references workspaces (name) on delete cascade,
    name        text not null,
    version     int not null,
    spec        jsonb not null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    deleted_at  timestamptz,
    unique (workspace, name)
);

create table trigger_versions (
    trigger_id  bigint not null references triggers (id) on delete cascade,
    version     int not null,
    spec        jsonb not null,
    created_at  timestamptz not null default now(),
    primary key (trigger_id, version)
);

-- Keys are random, so a SHA-256 digest is a safe and fast lookup; the key itself is never stored.
create table api_keys (
    id          uuid primary key,
    workspace   text not null references workspaces (name) on delete cascade,
    label       text not null,
    prefix      text not null,
    digest      bytea not null unique,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);

create table api_key_triggers (
    key_id      uuid not null references api_keys (id) on delete cascade,
    trigger_id  bigint not null references triggers (id) on delete cascade,
    primary key (key_id, trigger_id)
);

-- One row per invocation (its id), upserted by the worker: a redelivery adds an attempt.
create table executions (
    id              uuid primary key,
    workspace       text not null,
    trigger         text not null,
    trigger_version int not null,
    status          text not null check (status in ('running', 'succeeded', 'failed', 'dead')),
    attempts        int not null default 1,
    received_at     timestamptz not null,
    started_at      timestamptz not null,
    finished_at     timestamptz,
    request         jsonb not null,
    output          jsonb,
    response        jsonb,
    steps           jsonb not null default '[]',
    error           text,
    replay_of       uuid
);
create index executions_by_trigger on executions (workspace, trigger, received_at desc);
create index executions_by_status on executions (status, received_at desc);

-- Every service caches the registry and reloads it on this notification.
create function notify_registry() returns trigger language plpgsql as $$
begin
    perform pg_notify('hookline_registry', tg_table_name);
    return null;
end $$;

create trigger triggers_changed after insert or update or delete or truncate on triggers
    for each statement execute function notify_registry();
create trigger api_keys_changed after insert or update or delete or truncate on api_keys
    for each statement execute function notify_registry();
create trigger api_key_triggers_changed after insert or update or delete or truncate on api_key_triggers
    for each statement execute function notify_registry();
