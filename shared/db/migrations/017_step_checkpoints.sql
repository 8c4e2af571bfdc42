-- Durable runs: the output of each step with side effects (an http POST, a writing sql
-- query, a python step that declares effects), kept before the next step runs. A retry or
-- a redelivery of the execution takes these outputs instead of running those steps again
-- (worker/checkpoints.py). Keyed by the execution's id, which the first run's record may not
-- have yet (records are written when a run ends), so there is no foreign key.
create table step_checkpoints (
    execution_id uuid not null,
    step_id text not null,
    output json,
    record json not null,
    recorded_at timestamptz not null default now(),
    primary key (execution_id, step_id)
);
-- Swept by age with the run log (a checkpoint outlives no execution's retention).
create index step_checkpoints_by_age on step_checkpoints (recorded_at);
