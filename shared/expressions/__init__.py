"""Templates with JMESPath inside `{{ }}`, compiled once per trigger version.

A string that is exactly `{{ expr }}` yields the expression's value with its type; text
around `{{ }}` makes a string (objects and arrays rendered as JSON). JMESPath only reads the
data it is given (request, trigger, execution, steps): it cannot call Python, read files or
the environment, which is why it was chosen over a general template language. Compiling
also checks what can be checked before a run: the names an expression starts from, the
functions it calls (JMESPath's own and `shared.expressions.functions`) with their arity, and
slice steps. The first `}}` after a `{{` closes it; text outside such pairs is text, stray
braces included (`{"a": {"b": 1}}`), so a stored trigger always compiles (an unclosed `{{` is
refused when a file is applied, in shared/spec/checks.py). `steps_read` lists the
`steps.<id>` an expression reads, for the trigger-file checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
import msgspec

from shared.errors import ExpressionError
from shared.expressions.functions import HooklineFunctions

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_json = msgspec.json.Encoder()
_FUNCTIONS = HooklineFunctions()
_OPTIONS = jmespath.Options(custom_functions=_FUNCTIONS)
# One interpreter for every evaluation: `ParsedResult.search` builds a new one per call.
# It keeps no state between evaluations but a cache of its own visit methods.
_INTERPRETER = jmespath.visitor.TreeInterpreter(_OPTIONS)

# What a workflow's expressions start from; the ingress's async answer sees only the first two.
# `error` is the failure an `on_error` step handles (null in the workflow itself).
WORKFLOW_ROOTS = ("request", "execution", "trigger", "steps", "error")
RESPONSE_ROOTS = ("request", "execution")
# Nodes whose first child reads the same value as the node and whose other children read
# what the first produced (`a.b`, `a[0]`, `a[*].b`, `a[?b]`, `a | b`).
_CHAINS = frozenset(
    ("subexpression", "index_expression", "projection", "value_projection", "filter_projection", "pipe")
)


@dataclass(frozen=True)
class Expr:
    """One compiled `{{ expr }}`."""

    source: str
    parsed: Any
    # `a.b.c` (the commonest expression): its names, looked up without the tree walk.
    path: tuple[str, ...] | None = None

    def evaluate(self, data: dict[str, Any]) -> Any:
        if self.path is not None:
            return _lookup(data, self.path)
        try:
            return _INTERPRETER.visit(self.parsed.parsed, data)
        # Not only JMESPathError: functions let Python's own errors through, such as
        # TypeError from `max_by` comparing a number with a string, or OverflowError from
        # `ceil` of an infinite number.
        except (jmespath.exceptions.JMESPathError, TypeError, ValueError, ArithmeticError) as exc:
            raise ExpressionError(f"expression {{{{ {self.source} }}}}: {_one_line(exc)}") from None


def _lookup(value: Any, path: tuple[str, ...]) -> Any:
    """What JMESPath's field and subexpression visits give: `.get` each name, None past a non-object."""
    for name in path:
        try:
            value = value.get(name)
        except AttributeError:
            return None
    return value


def _field_path(node: Any) -> tuple[str, ...] | None:
    """The names of a parsed `a` or `a.b.c`, or None for any other expression."""
    if node["type"] == "field":
        return (node["value"],)
    if node["type"] == "subexpression":
        children = node["children"]
        if all(child["type"] == "field" for child in children):
            return tuple(child["value"] for child in children)
    return None


@dataclass(frozen=True)
class Interpolation:
    """Text with expressions inside: always renders a string."""

    parts: tuple[str | Expr, ...]

    def evaluate(self, data: dict[str, Any], escape: Callable[[str], str] | None = None) -> str:
        """The text, with each expression's value passed through `escape` (e.g. URL quoting)."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                text = _text(part.evaluate(data))
                out.append(escape(text) if escape else text)
        return "".join(out)


def compile_expression(source: str, roots: tuple[str, ...] = WORKFLOW_ROOTS) -> Expr:
    """Compile and check one JMESPath expression; ExpressionError names it."""
    source = source.strip()
    if not source:
        raise ExpressionError("empty expression {{ }}")
    try:
        parsed = jmespath.compile(source)
    except jmespath.exceptions.JMESPathError as exc:
        raise ExpressionError(f"expression {{{{ {source} }}}}: {_one_line(exc)}") from None
    problem = _check(parsed.parsed, roots, at_root=True)
    if problem:
        raise ExpressionError(f"expression {{{{ {source} }}}}: {problem}")
    return Expr(source, parsed, _field_path(parsed.parsed))


def _check(node: Any, roots: tuple[str, ...], at_root: bool) -> str | None:
    """The first thing wrong with a parsed expression: an unknown start, function or arity."""
    if not isinstance(node, dict):
        return None  # slice bounds are plain numbers
    kind: str = node["type"]
    value: Any = node.get("value")
    children: list[Any] = node.get("children", [])
    if kind == "slice" and children[2] == 0:
        return "a slice step cannot be 0"
    if kind == "field":
        if value.startswith("__") and value.endswith("__"):
            return f"`{value}`: Python internals are not reachable; expressions read only the run's data"
        if at_root and value not in roots:
            return f"unknown name `{value}`; an expression starts from {', '.join(roots)}"
    if kind == "function_expression":
        problem = _check_call(value, len(children))
        if problem:
            return problem
    for position, child in enumerate(children):
        # `&expr` reads each element it is applied to, not the value around it.
        same_value = position == 0 if kind in _CHAINS else kind != "expref"
        problem = _check(child, roots, at_root and same_value)
        if problem:
            return problem
    return None


def _check_call(name: str, given: int) -> str | None:
    spec = _FUNCTIONS.FUNCTION_TABLE.get(name)
    if spec is None:
        known = ", ".join(sorted(_FUNCTIONS.FUNCTION_TABLE))
        return f"unknown function {name}(); the functions are {known}"
    wanted = len(spec["signature"])
    variadic = bool(spec["signature"]) and spec["signature"][-1].get("variadic", False)
    if given < wanted if variadic else given != wanted:
        count = f"at least {wanted}" if variadic else str(wanted)
        return f"{name}() takes {count} argument{'s' if wanted != 1 else ''}, not {given}"
    return None


def steps_read(expr: Expr) -> list[str]:
    """The ids an expression reads as `steps.<id>` (`steps.a.output`, `steps.a[0]`, `steps | a`)."""
    found: list[str] = []
    _steps_read(expr.parsed.parsed, True, found)
    return found


def _steps_read(node: Any, at_root: bool, found: list[str]) -> None:
    if not isinstance(node, dict):
        return
    kind: str = node["type"]
    children: list[Any] = node.get("children", [])
    if at_root and kind in ("subexpression", "pipe"):
        chain = [child for child in children if child["type"] != "current"]  # `@.steps.a`
        if len(chain) > 1 and chain[0]["type"] == "field" and chain[0]["value"] == "steps":
            step = _leading_field(chain[1])
            if step is not None:
                found.append(step)
    for position, child in enumerate(children):
        same_value = position == 0 if kind in _CHAINS else kind != "expref"
        _steps_read(child, at_root and same_value, found)


def _leading_field(node: Any) -> str | None:
    """The name a chain starts with: `a` of `a`, `a[0]`, `a[*].b`, `a.b`."""
    while isinstance(node, dict):
        if node["type"] == "field":
            return str(node["value"])
        if node["type"] not in _CHAINS:
            return None
        node = node["children"][0]
    return None


def expressions_in(compiled: Any) -> Iterator[Expr]:
    """Every expression of a compiled value tree, in order."""
    if isinstance(compiled, Expr):
        yield compiled
    elif isinstance(compiled, Interpolation):
        yield from (part for part in compiled.parts if isinstance(part, Expr))
    elif isinstance(compiled, dict):
        for item in compiled.values():
            yield from expressions_in(item)
    elif isinstance(compiled, list):
        for item in compiled:
            yield from expressions_in(item)


def compile_template(value: Any, roots: tuple[str, ...] = WORKFLOW_ROOTS) -> Any:
    """Compile every string of a value tree that holds `{{ }}`; the rest stays as it is."""
    if isinstance(value, str):
        matches = list(_TEMPLATE.finditer(value))
        if not matches:
            return value
        if len(matches) == 1 and matches[0].span() == (0, len(value)):
            return compile_expression(matches[0][1], roots)
        parts: list[str | Expr] = []
        last = 0
        for match in matches:
            if match.start() > last:
                parts.append(value[last : match.start()])
            parts.append(compile_expression(match[1], roots))
            last = match.end()
        if last < len(value):
            parts.append(value[last:])
        return Interpolation(tuple(parts))
    if isinstance(value, dict):
        return {k: compile_template(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_template(v, roots) for v in value]
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
