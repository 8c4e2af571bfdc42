"""HMAC signatures over the raw body, checked with the trigger's scheme and secrets."""

from __future__ import annotations

from collections.abc import Mapping

from ingress.errors import Unauthorized
from shared.signatures.scheme import SignatureScheme
from shared.signatures.verify import SignatureInvalid, verify


class HmacSignature:
    """One trigger's signature scheme and its secrets (several during a rotation)."""

    def __init__(self, scheme: SignatureScheme, secrets: list[bytes]) -> None:
        self._scheme = scheme
        self._secrets = secrets
        self.credential_headers = frozenset({scheme.header.lower(), "authorization"})

    async def before_body(self, headers: Mapping[str, str]) -> str | None:
        if self._scheme.header.lower() not in headers:
            raise Unauthorized("missing-header")
        return None

    def after_body(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        try:
            verify(self._scheme, self._secrets, body, headers, now)
        except SignatureInvalid as exc:
            raise Unauthorized(exc.reason) from None
