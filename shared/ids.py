"""Identifiers: time-ordered UUIDs (version 7) for executions, random API keys."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
import uuid

KEY_PREFIX = "hk_"
MIN_PASTED_KEY_LENGTH = 24


def uuid7() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): millisecond time first, so ids sort by creation time."""
    ms = time.time_ns() // 1_000_000
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant 10
    return uuid.UUID(int=value)


def is_uuid(text: str) -> bool:
    """Whether `text` is a UUID (an execution id) at all."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def new_api_key() -> str:
    """A fresh key: 32 random bytes, URL-safe, with a recognisable prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> bytes:
    """What is stored and looked up: SHA-256 of the key (keys are random, so this is safe)."""
    return hashlib.sha256(key.encode()).digest()


def key_display_prefix(key: str) -> str:
    """The first characters shown in listings so people can tell keys apart."""
    return key[:8]
