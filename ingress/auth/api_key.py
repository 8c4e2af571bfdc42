"""API keys: `X-API-Key: <key>` or `Authorization: Bearer <key>`, matched by SHA-256 digest."""

from __future__ import annotations

from collections.abc import Mapping

from ingress.errors import Unauthorized
from shared.ids import key_digest


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


def verify_api_key(headers: Mapping[str, str], digests: frozenset[bytes]) -> bytes:
    """The digest of the caller's valid key; Unauthorized otherwise.

    Keys are random, so looking a digest up in a set leaks nothing an attacker can use:
    they cannot choose preimages of the digests they probe.
    """
    key = presented_key(headers)
    if key is None:
        raise Unauthorized("missing-key", challenge='Bearer realm="hookline"')
    digest = key_digest(key)
    if digest not in digests:
        raise Unauthorized("invalid-key", challenge='Bearer realm="hookline"')
    return digest
