-- Console sign-ins: the cookie holds a random session id, never a token; a row keeps only
-- the id's SHA-256 digest, what it signed in with, and when it stops being valid.
-- `token_id` is the api_tokens row signed in with (revoking the token ends its sessions);
-- null means HOOKLINE_ADMIN_TOKEN, and then `admin_binding` is HMAC-SHA-256(admin token,
-- session id): a changed admin token ends its sessions, and without the session id (not
-- stored) the binding says nothing about the admin token.
create table console_sessions (
    digest         bytea primary key,
    token_id       uuid references api_tokens (id) on delete cascade,
    admin_binding  bytea,
    created_at     timestamptz not null default now(),
    expires_at     timestamptz not null,
    check ((token_id is null) <> (admin_binding is null))
);

create index console_sessions_by_expiry on console_sessions (expires_at);
