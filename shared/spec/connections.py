"""Named connections of a workspace: how steps reach other systems.

Secrets are `${env:NAME}` references, stored as written and resolved only by the worker
that uses them, from its own environment (shared/spec/secrets.py `resolve`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.spec.answers import RESERVED_HEADERS
from shared.spec.base import Spec

# An HTTP header name (RFC 9110 token).
HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Headers that frame or route the request: an idempotency key may not be sent as one.
_NOT_A_KEY_HEADER = RESERVED_HEADERS | {"host", "content-type", "content-encoding", "expect"}


def check_idempotency_header(name: str | None) -> None:
    """ValueError if `name` would replace a header that frames or routes the request."""
    if isinstance(name, str) and name.lower() in _NOT_A_KEY_HEADER:
        raise ValueError(f"`idempotency_header` cannot be {name}: that header frames or routes the request")


class PostgresConnection(Spec, tag="postgres", tag_field="type", frozen=True):
    """A PostgreSQL database for `sql` steps; each worker keeps a small pool for it."""

    dsn: Annotated[str, msgspec.Meta(min_length=1)]
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4


class HttpConnection(Spec, tag="http", tag_field="type", frozen=True):
    """A base URL and headers (API keys, tokens) that `http` steps add to their requests."""

    base_url: Annotated[str, msgspec.Meta(min_length=1)]
    headers: dict[str, str] = {}
    # Every call through it sends `<execution id>:<step id>` in this header, the same on
    # every attempt and redelivery, so the target can drop a repeat; null sends none.
    idempotency_header: HeaderName | None = IDEMPOTENCY_HEADER

    def __post_init__(self) -> None:
        check_idempotency_header(self.idempotency_header)


Connection = PostgresConnection | HttpConnection


# Header names that carry credentials, by convention: their values are never recorded.
_CREDENTIAL_WORDS = ("auth", "cookie", "key", "token", "secret", "password", "signature", "session")


def is_credential_header(name: str) -> bool:
    """Whether a header's value is a credential (Authorization, api-key, X-Auth-Token, Cookie...)."""
    lowered = name.lower()
    return any(word in lowered for word in _CREDENTIAL_WORDS)
