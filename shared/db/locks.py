"""Every PostgreSQL advisory lock hookline takes, in one place so no two share a key."""

from __future__ import annotations

MIGRATE = 0x686F6F6B  # "hook": one migrator at a time across processes
RECONCILE = 0x686F6F6C  # "hool": one dispatcher reconciles at a time
RETENTION = 0x686F6F72  # "hoor": one retention leader at a time
SCHEDULES = 0x686F6F73  # "hoos": one dispatcher publishes the schedules' ticks at a time
