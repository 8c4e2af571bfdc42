-- A claim is `unconfirmed` when its call's publish was sent but never confirmed (its outcome
-- is unknown): the claim is kept, bound to its execution id, and the caller's retry with the
-- same key publishes the call again under that id (the worker runs such an id once).
alter table idempotency_keys add column unconfirmed boolean not null default false;
