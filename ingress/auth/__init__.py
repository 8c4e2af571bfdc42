"""Authentication of webhook calls: one verifier a module, chosen per trigger at load time.

`before_body` runs before the body is read (API keys, Basic), so a caller without
credentials cannot make us read a megabyte; `after_body` runs on the raw bytes (HMAC).
Both raise Unauthorized, whose detail never says which part was wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ingress.errors import TriggerMisconfigured


class Authenticator(Protocol):
    """How one trigger checks its callers."""

    #: Header names that carry credentials: never passed on to the workflow.
    credential_headers: frozenset[str]

    async def before_body(self, headers: Mapping[str, str]) -> str | None:
        """Check what the headers alone can prove; return the caller's identity for rate limits."""
        ...

    def after_body(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        """Check what needs the raw body (signatures)."""
        ...


class Open:
    """`auth: {type: none}`: anyone may call."""

    credential_headers: frozenset[str] = frozenset()

    async def before_body(self, headers: Mapping[str, str]) -> str | None:
        return None

    def after_body(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        return None


class Misconfigured:
    """A trigger whose credentials cannot be checked here: every call gets 503 until fixed."""

    credential_headers: frozenset[str] = frozenset({"authorization"})

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def before_body(self, headers: Mapping[str, str]) -> str | None:
        raise TriggerMisconfigured(f"this trigger cannot check credentials: {self.reason}")

    def after_body(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        return None
