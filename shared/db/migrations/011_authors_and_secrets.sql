-- Who wrote a trigger's definition decides which `${env:NAME}` it may resolve: the operator
-- (`hookline apply`, the admin token) any; a workspace token only the names the operator
-- allowed for that workspace (HOOKLINE_WORKSPACE_ENV). Definitions stored before this
-- migration came from either; they are taken as the workspace's, the narrower trust, until
-- the operator applies them again.
alter table triggers add column author text not null default 'workspace'
    check (author in ('operator', 'workspace'));
alter table trigger_versions add column author text not null default 'workspace'
    check (author in ('operator', 'workspace'));

-- `${secret:NAME}` values of a workspace, encrypted (AES-GCM, the workspace and name as
-- associated data) with the key in HOOKLINE_SECRETS_KEY: the database never holds a value.
create table workspace_secrets (
    workspace   text not null references workspaces (name) on delete cascade,
    name        text not null,
    ciphertext  bytea not null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    primary key (workspace, name)
);

-- Ingresses (HMAC secrets) and workers (connections) follow the registry channel.
create trigger workspace_secrets_changed after insert or update or delete or truncate on workspace_secrets
    for each statement execute function notify_registry();
