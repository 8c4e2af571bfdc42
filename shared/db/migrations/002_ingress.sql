-- What the ingress keeps across its processes: idempotency claims, rate-limit buckets,
-- and the last refused calls per trigger (for an operator finding out why a sender fails).

create table idempotency_keys (
    workspace    text not null,
    trigger      text not null,
    key          text not null,
    execution_id uuid not null,
    created_at   timestamptz not null default now(),
    expires_at   timestamptz not null,
    primary key (workspace, trigger, key)
);
create index idempotency_keys_expiry on idempotency_keys (expires_at);

-- GCRA: one "theoretical arrival time" per bucket. Unlogged: losing it in a crash only
-- forgets recent counts, and it makes every rate-limited call cheaper.
create unlogged table rate_limits (
    bucket text primary key,
    tat    timestamptz not null
);

create table rejected_calls (
    id           bigserial primary key,
    workspace    text not null,
    trigger      text not null,
    at           timestamptz not null,
    status       int not null,
    problem_type text not null,
    reason       text not null,
    method       text not null,
    content_type text,
    headers      jsonb not null,
    body         bytea,
    body_size    int
);
create index rejected_calls_by_trigger on rejected_calls (workspace, trigger, id desc);
