-- The W3C trace id (32 hex digits) of an execution's trace, when tracing is on (README,
-- Tracing): the caller's own when its call carried a `traceparent`, else the one the
-- ingress started. Null for runs recorded with tracing off. Adding a nullable column
-- without a default rewrites nothing: instant on a large run log.
alter table executions add column trace_id text;
