-- Every running service process says it is alive every few seconds: `hookline status`
-- lists them (up, not ready, or silent since when). A process that stops cleanly removes
-- its row; one that was killed is shown silent, then forgotten after ten minutes.
create table service_heartbeats (
    instance     text primary key,          -- host:pid
    service      text not null,             -- ingress, worker, dispatcher
    started_at   timestamptz not null,
    seen_at      timestamptz not null,
    ready        boolean not null,
    metrics_port int                        -- where its /metrics is, when it serves one
);
