"""Scalar types of the trigger file that msgspec cannot decode by itself (durations)."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Duration(float):
    """A length of time in seconds, written `500ms`, `10s`, `5m`, `24h`, `7d` or a number."""

    __slots__ = ()


def parse_duration(value: object) -> Duration:
    """Turn `10s` (or a number of seconds) into a Duration; ValueError names the value."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: use a number of seconds or 500ms, 10s, 5m, 24h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return Duration(value)
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match:
            return Duration(float(match[1]) * _UNITS[match[2]])
    raise ValueError(f"invalid duration {value!r}: use a number of seconds or 500ms, 10s, 5m, 24h")


def dec_hook(type_: type, obj: Any) -> Any:
    """msgspec decode hook for the trigger file's custom scalars."""
    if type_ is Duration:
        return parse_duration(obj)
    raise NotImplementedError(f"cannot decode {type_!r}")


def enc_hook(obj: Any) -> Any:
    """msgspec encode hook: durations are stored as seconds."""
    if isinstance(obj, Duration):
        return float(obj)
    raise NotImplementedError(f"cannot encode {type(obj)!r}")
