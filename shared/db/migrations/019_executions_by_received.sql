-- The console's per-minute charts over every workspace (shared/db/trends.py) read the last
-- hours of executions by `received_at`: an index keeps that a range scan, not a full one.
-- (A workspace's or a trigger's chart uses executions_by_trigger.)
create index executions_by_received on executions (received_at);
