-- Who wrote each trigger version is trigger_versions.author (migration 011): an http step's
-- literal `url` in an operator's version is called as written; in a workspace's version it is
-- held to the egress policy, as is every target that comes from an expression.

-- Networks a workspace's http steps may reach beyond the public internet, set by the admin
-- only (HOOKLINE_EGRESS_ALLOW opens networks to every workspace). Entries as in the
-- setting: `10.1.0.0/16`, `127.0.0.1:8099`, `[fd00::1]:443`.
create table workspace_egress (
    workspace   text primary key references workspaces (name) on delete cascade,
    allow       text[] not null,
    updated_at  timestamptz not null default now()
);

-- Workers follow it like the connections: a changed list takes effect without a restart.
create trigger workspace_egress_changed after insert or update or delete or truncate on workspace_egress
    for each statement execute function notify_registry();
