"""HTTP Basic against a scrypt hash, with verified pairs cached so the hot path stays fast.

scrypt takes ~50 ms by design; it runs in a thread, once per new (username, password) pair
per process and cache period. The cache is keyed by a keyed digest of the header, so the
process never keeps a password, only proof that one matched.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Mapping

from ingress.errors import Unauthorized
from shared.spec.secrets import verify_password

_PEPPER = os.urandom(32)  # per process: cache keys mean nothing elsewhere
CACHE_SECONDS = 300.0
CACHE_SIZE = 1024
# scrypt runs at once per trigger: a flood of wrong passwords queues here, behind its own
# trigger, instead of taking every thread of the process's default pool.
HASHING_AT_ONCE = 2
_HINTS = {
    "missing-credentials": "no Basic credentials: send Authorization: Basic <base64 of username:password>",
    "malformed-credentials": "the Authorization: Basic value is not base64 of username:password in UTF-8",
    "invalid-credentials": "wrong username or password",
}


def _refused(reason: str, challenge: str) -> Unauthorized:
    return Unauthorized(reason, challenge=challenge, hint={"reason": reason, "message": _HINTS[reason]})


class BasicCredentials:
    """One trigger's Basic username and password hash."""

    credential_headers = frozenset({"authorization"})

    def __init__(self, username: str, password_hash: str, realm: str) -> None:
        self.username = username  # not a secret; `triggers try` sends it (ingress/trials.py)
        self._hash = password_hash
        self._challenge = f'Basic realm="{realm}", charset="UTF-8"'
        self._verified: dict[bytes, float] = {}
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)

    async def before_body(self, headers: Mapping[str, str]) -> str | None:
        value = headers.get("authorization", "")
        scheme, _, encoded = value.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise _refused("missing-credentials", self._challenge)
        cache_key = hmac.digest(_PEPPER, encoded.strip().encode(), hashlib.sha256)
        now = time.monotonic()
        if self._verified.get(cache_key, 0.0) > now:
            return self.username
        try:
            username, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _refused("malformed-credentials", self._challenge) from None
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        # Always pay for the hash, so a wrong username takes as long as a wrong password.
        async with self._hashing:
            password_ok = await asyncio.to_thread(verify_password, password, self._hash)
        if not (user_ok and password_ok):
            raise _refused("invalid-credentials", self._challenge)
        if len(self._verified) >= CACHE_SIZE:
            self._verified = {k: t for k, t in self._verified.items() if t > now}
            if len(self._verified) >= CACHE_SIZE:
                self._verified.clear()
        self._verified[cache_key] = now + CACHE_SECONDS
        return self.username

    def after_body(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        return None
