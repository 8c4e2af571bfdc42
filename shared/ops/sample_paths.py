"""Every path of a trigger's sample (`request.body.customer.name`, `request.query.item`...)
with its type, its value (shortened) and the `{{ }}` expression that reads it.

The expressions are JMESPath as the workflow writes them: a name that is not an identifier
is quoted (`request.headers."x-request-id"`), a list item indexed (`request.body.items[0]`).
The list is bounded: a huge sample shows its first `MAX_PATHS` paths and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

MAX_PATHS = 2000
MAX_VALUE = 80  # characters of a value shown
MAX_ITEMS = 20  # items of one list walked (the first ones; the type of the others is the same)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class SamplePath:
    """One value of the sample: where it is, what it is, how an expression reads it."""

    path: str
    type: str  # string, integer, number, boolean, null, object, array
    value: str  # JSON, at most MAX_VALUE characters (then "...")
    expression: str


@dataclass(frozen=True)
class SamplePaths:
    """The paths of one sample, and whether some were left out."""

    execution_id: str
    paths: list[SamplePath]
    truncated: bool


def sample_paths(execution_id: str, request: dict[str, Any]) -> SamplePaths:
    """The paths of a sample's `request` variables, depth first, in the sample's order."""
    out: list[SamplePath] = []
    truncated = _walk("request", request, out)
    return SamplePaths(execution_id, out, truncated)


def _walk(path: str, value: Any, out: list[SamplePath]) -> bool:
    """Append `value`'s own children (not itself); True when MAX_PATHS cut the walk short."""
    if isinstance(value, dict):
        children = [(f"{path}.{_name(str(k))}", v) for k, v in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(value[:MAX_ITEMS])]
    else:
        return False
    for child_path, child in children:
        if len(out) >= MAX_PATHS:
            return True
        out.append(SamplePath(child_path, type_of(child), shown(child), "{{ " + child_path + " }}"))
        if _walk(child_path, child, out):
            return True
    return False


def _name(key: str) -> str:
    if _IDENTIFIER.fullmatch(key):
        return key
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def type_of(value: Any) -> str:
    """The JSON type of a value, with integer told from number."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def shown(value: Any) -> str:
    """A value as JSON, cut to MAX_VALUE characters."""
    text = _json.encode(value).decode()
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."
