-- Who made the call, where its trigger can tell callers apart (the first 32 hex digits of
-- the API key's SHA-256 digest; null otherwise): the status URL shows an execution only to
-- the key that made it, as idempotent repeats are per key.
alter table executions add column caller text;
