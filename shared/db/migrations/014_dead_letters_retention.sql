-- Dead letters, moved out of the dead-letter queue by the dispatcher (insert, then ack) so
-- operators page and filter them in SQL instead of taking the whole queue into memory.
-- `id` is the message id (an invocation's execution id): a redelivery of the same letter
-- lands on its own row. `seq` orders the pages (keyset) and names the row's version: a
-- letter that dies again while a replay of it is on its way gets a new `seq`, so the replay
-- deletes only the version it published.
create table dead_letters (
    id           text primary key,
    seq          bigserial not null unique,
    execution_id uuid,              -- set when the letter is an invocation
    workspace    text,
    trigger      text,
    reason       text not null,     -- rejected (out of attempts), delivery_limit, ...
    queue        text not null,     -- where it died
    died_at      timestamptz not null,
    body         bytea not null,
    headers      bytea not null,    -- msgpack of the headers a replay keeps (no x-death)
    content_type text,
    type         text
);
create index dead_letters_by_trigger on dead_letters (workspace, trigger, seq desc);
create index dead_letters_by_workspace on dead_letters (workspace, seq desc);

-- What the retention leader did last, per table family, for `hookline status`.
create table retention_sweeps (
    family        text primary key,
    swept_at      timestamptz not null,
    deleted       bigint not null,          -- by the last sweep
    deleted_total bigint not null default 0 -- since the row was created
);

-- Retention deletes rejected calls by age (the ingress's writer caps them per trigger by count).
create index rejected_calls_by_time on rejected_calls (at);
