"""HMAC signatures over the raw body, checked with the trigger's scheme and secrets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingress.errors import Unauthorized
from shared.signatures.scheme import SignatureScheme
from shared.signatures.verify import SignatureInvalid, verify

_MESSAGES = {
    "missing-header": "header {header} is missing or empty",
    "bad-encoding": "header {header} holds no signature (or timestamp) written as the scheme expects",
    "mismatch": "the signature does not match: another secret, or a body changed after signing",
    "timestamp-missing": "no timestamp in {header}",
    "timestamp-stale": "the timestamp is {skew} s old, more than the {tolerance:g} s allowed (a replay or a slow clock)",
    "timestamp-future": "the timestamp is {ahead} s ahead of our clock, more than the {tolerance:g} s allowed",
}


def signature_hint(scheme: SignatureScheme, exc: SignatureInvalid) -> dict[str, Any]:
    """What a refused sender can act on: the reason, the header, the scheme, the skew.

    Never the expected signature or the secret: only what the sender already knows.
    """
    header = exc.header or scheme.header
    skew = exc.skew or 0
    message = _MESSAGES[exc.reason].format(header=header, skew=skew, ahead=-skew, tolerance=scheme.tolerance)
    hint: dict[str, Any] = {"reason": exc.reason, "message": message, "expected": scheme.describe()}
    if exc.header is not None:
        hint["header"] = exc.header
    if exc.skew is not None:
        hint["skew_seconds"] = exc.skew
    return hint


class HmacSignature:
    """One trigger's signature scheme and its secrets (several during a rotation)."""

    def __init__(self, scheme: SignatureScheme, secrets: list[bytes]) -> None:
        self.scheme = scheme
        self.secrets = secrets  # `triggers try` signs with the first (ingress/api/trials.py)
        self.credential_headers = frozenset({scheme.header.lower(), "authorization"})

    async def before_body(self, headers: Mapping[str, str]) -> str | None:
        if self.scheme.header.lower() not in headers:
            missing = SignatureInvalid("missing-header", header=self.scheme.header)
            raise Unauthorized("missing-header", hint=signature_hint(self.scheme, missing))
        return None

    def after_body(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        try:
            verify(self.scheme, self.secrets, body, headers, now)
        except SignatureInvalid as exc:
            raise Unauthorized(exc.reason, hint=signature_hint(self.scheme, exc)) from None
