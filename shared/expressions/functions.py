"""hookline's JMESPath functions, added through jmespath's documented extension point.

Each is pure and reads only its arguments: none touches files, the environment or the
network, so adding them keeps expressions unable to reach anything but the run's data.

- `now()`: the current UTC time, ISO 8601 (`2025-01-31T12:00:00.000Z`)
- `uuid()`: a random UUID (version 4) as text
- `upper(s)`, `lower(s)`, `trim(s)`: case and surrounding white space
- `concat(a, b, ...)`: strings, numbers and booleans joined as text; null counts as ""
- `split(s, separator)`: a list of strings
- `replace(s, old, new)`: every `old` replaced by `new`
- `from_json(s)`: parse a JSON text (a text body, a JSON column) into a value
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import jmespath.exceptions
import jmespath.functions
import msgspec
from jmespath.functions import signature

_SCALARS = ["string", "number", "boolean", "null"]


class HooklineFunctions(jmespath.functions.Functions):
    """JMESPath's built-in functions plus hookline's (see the module docstring)."""

    @signature()
    def _func_now(self) -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @signature()
    def _func_uuid(self) -> str:
        return str(uuid.uuid4())

    @signature({"types": ["string"]})
    def _func_upper(self, text: str) -> str:
        return text.upper()

    @signature({"types": ["string"]})
    def _func_lower(self, text: str) -> str:
        return text.lower()

    @signature({"types": ["string"]})
    def _func_trim(self, text: str) -> str:
        return text.strip()

    @signature({"types": _SCALARS}, {"types": _SCALARS, "variadic": True})
    def _func_concat(self, *values: Any) -> str:
        return "".join(_text(v) for v in values)

    @signature({"types": ["string"]}, {"types": ["string"]})
    def _func_split(self, text: str, separator: str) -> list[str]:
        if not separator:
            raise jmespath.exceptions.JMESPathError("split(): the separator must not be empty")
        return text.split(separator)

    @signature({"types": ["string"]}, {"types": ["string"]}, {"types": ["string"]})
    def _func_replace(self, text: str, old: str, new: str) -> str:
        if not old:
            raise jmespath.exceptions.JMESPathError("replace(): the text to replace must not be empty")
        return text.replace(old, new)

    @signature({"types": ["string"]})
    def _func_from_json(self, text: str) -> Any:
        try:
            return msgspec.json.decode(text)
        except (msgspec.DecodeError, RecursionError):
            raise jmespath.exceptions.JMESPathError("from_json(): the text is not valid JSON") from None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
