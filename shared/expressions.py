"""Templates with JMESPath inside `{{ }}`, compiled once per trigger version.

A string that is exactly `{{ expr }}` yields the expression's value with its type; text
around `{{ }}` makes a string (objects and arrays rendered as JSON). JMESPath only reads the
data it is given (request, trigger, execution, steps): it cannot call Python, read files or
the environment, which is why it was chosen over a general template language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
import msgspec

from shared.errors import ExpressionError

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class Expr:
    """One compiled `{{ expr }}`."""

    source: str
    parsed: Any

    def evaluate(self, data: dict[str, Any]) -> Any:
        try:
            return self.parsed.search(data)
        except jmespath.exceptions.JMESPathError as exc:
            raise ExpressionError(f"expression {{{{ {self.source} }}}}: {_one_line(exc)}") from None


@dataclass(frozen=True)
class Interpolation:
    """Text with expressions inside: always renders a string."""

    parts: tuple[str | Expr, ...]

    def evaluate(self, data: dict[str, Any]) -> str:
        out = []
        for part in self.parts:
            out.append(part if isinstance(part, str) else _text(part.evaluate(data)))
        return "".join(out)


def compile_expression(source: str) -> Expr:
    """Compile one JMESPath expression; ExpressionError names it."""
    source = source.strip()
    if not source:
        raise ExpressionError("empty expression {{ }}")
    try:
        return Expr(source, jmespath.compile(source))
    except jmespath.exceptions.JMESPathError as exc:
        raise ExpressionError(f"expression {{{{ {source} }}}}: {_one_line(exc)}") from None


def compile_template(value: Any) -> Any:
    """Compile every string of a value tree that holds `{{ }}`; the rest stays as it is."""
    if isinstance(value, str):
        matches = list(_TEMPLATE.finditer(value))
        if not matches:
            return value
        if len(matches) == 1 and matches[0].span() == (0, len(value)):
            return compile_expression(matches[0][1])
        parts: list[str | Expr] = []
        last = 0
        for match in matches:
            if match.start() > last:
                parts.append(value[last : match.start()])
            parts.append(compile_expression(match[1]))
            last = match.end()
        if last < len(value):
            parts.append(value[last:])
        return Interpolation(tuple(parts))
    if isinstance(value, dict):
        return {k: compile_template(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_template(v) for v in value]
    return value


def render(compiled: Any, data: dict[str, Any]) -> Any:
    """Evaluate a compiled value tree against the run's data."""
    if isinstance(compiled, Expr | Interpolation):
        return compiled.evaluate(data)
    if isinstance(compiled, dict):
        return {k: render(v, data) for k, v in compiled.items()}
    if isinstance(compiled, list):
        return [render(v, data) for v in compiled]
    return compiled


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _json.encode(value).decode()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
