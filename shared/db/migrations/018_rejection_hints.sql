-- What a sender can act on when its call was refused (ingress/rejections.py `hint`): for a
-- signature, which header was missing, the scheme expected and the timestamp's skew in
-- seconds; for an API key, a missing header or an unknown key. Never a secret, the
-- presented key or the expected signature. Rows stay bounded per trigger as before.
alter table rejected_calls add column hint jsonb;
