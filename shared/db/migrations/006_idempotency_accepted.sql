-- A claim is `accepted` once the broker confirmed its call's message. A repeat that arrives
-- before then waits for that (or for the claim's release when the publish failed), so it is
-- never answered with a 2xx for a message that was not confirmed.
alter table idempotency_keys add column accepted boolean not null default true;
