-- A key's digest is unique within its workspace, not across workspaces: a tenant pasting a
-- key that another workspace already uses is not told so (review #16, an oracle for other
-- tenants' keys). The ingress finds keys per trigger, so the same digest in two workspaces
-- opens each workspace's own triggers only.
alter table api_keys drop constraint api_keys_digest_key;
alter table api_keys add constraint api_keys_workspace_digest_key unique (workspace, digest);

-- What the first call with an idempotency key was (SHA-256 of its method, query and body):
-- a repeat of the key with another request is refused (422), not answered with the first
-- call's result (review #18). Null for claims made before this column.
alter table idempotency_keys add column fingerprint bytea;
