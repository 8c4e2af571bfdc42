"""API keys: `X-API-Key: <key>` or `Authorization: Bearer <key>`, matched by SHA-256 digest."""

from __future__ import annotations

from collections.abc import Mapping

from ingress.errors import Unauthorized
from shared.ids import key_digest

CHALLENGE = 'Bearer realm="hookline"'
# What a refused sender is told in the operator's list (never the key it sent).
MISSING_HINT = {
    "reason": "missing-key",
    "message": "no API key: send it as X-API-Key or Authorization: Bearer",
}
UNKNOWN_HINT = {
    "reason": "unknown-key",
    "message": "unknown key: no live key of this trigger has this value (mistyped, revoked or another trigger's)",
}


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key the caller sent, if any."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


class ApiKeys:
    """The digests of the keys attached to one trigger (revoked ones are not loaded)."""

    credential_headers = frozenset({"x-api-key", "authorization"})

    def __init__(self, digests: frozenset[bytes]) -> None:
        self._digests = digests

    async def before_body(self, headers: Mapping[str, str]) -> str | None:
        """The caller's key digest (hex) as its identity; Unauthorized otherwise.

        Keys are random, so looking a digest up in a set leaks nothing an attacker can use:
        they cannot choose preimages of the digests they probe.
        """
        key = presented_key(headers)
        if key is None:
            raise Unauthorized("missing-key", challenge=CHALLENGE, hint=MISSING_HINT)
        digest = key_digest(key)
        if digest not in self._digests:
            raise Unauthorized("invalid-key", challenge=CHALLENGE, hint=UNKNOWN_HINT)
        return digest.hex()

    def after_body(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        return None
