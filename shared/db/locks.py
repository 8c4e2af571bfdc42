"""Every PostgreSQL advisory lock hookline takes, in one place so no two share a key."""

from __future__ import annotations

MIGRATE = 0x686F6F6B  # "hook": one migrator at a time across processes
RECONCILE = 0x686F6F6C  # "hool": one dispatcher reconciles at a time
DEAD_LETTER_LOOK = 0x686F6F64  # "hood": one look at the dead-letter queue at a time
