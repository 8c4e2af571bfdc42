-- Named connections of a workspace (postgres databases, http services) used by workflow steps.
-- `spec` holds secrets only as ${env:NAME} references: each worker resolves them from its
-- own environment at run time, so no resolved secret is ever stored here.
create table connections (
    workspace   text not null references workspaces (name) on delete cascade,
    name        text not null,
    spec        jsonb not null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    primary key (workspace, name)
);

-- Workers follow this table like the trigger registry: a changed DSN or header takes
-- effect without a restart.
create trigger connections_changed after insert or update or delete or truncate on connections
    for each statement execute function notify_registry();
