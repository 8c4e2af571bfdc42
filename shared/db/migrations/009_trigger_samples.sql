-- The last call each trigger accepted, as its workflow sees `request`: written by the
-- ingress once the broker confirmed the call (at most once a second per trigger and
-- process), so a sample is there before any worker ran it, paused triggers included.
create table trigger_samples (
    workspace    text not null,
    trigger      text not null,
    execution_id uuid not null,
    received_at  timestamptz not null,
    request      jsonb not null,
    primary key (workspace, trigger)
);
