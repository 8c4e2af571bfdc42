"""The ordering key of a call: an expression over the request, evaluated by the ingress.

Its value goes in the `x-hookline-key` header; the trigger's consistent-hash exchange hashes
it to a partition queue, so calls with the same key share a lane and keep their order.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.errors import ExpressionError
from shared.expressions import Expr, compile_expression
from shared.wire.messages import RequestData

KEY_ROOTS = ("request",)
_json = msgspec.json.Encoder()


def compile_key(source: str) -> Expr:
    """Compile a key expression (`{{ }}` around it is allowed); ExpressionError if invalid."""
    source = source.strip()
    if source.startswith("{{") and source.endswith("}}"):
        source = source[2:-2]
    return compile_expression(source, KEY_ROOTS)


def ordering_key_value(key: Expr, request: RequestData) -> str:
    """The key as text: strings as they are, other values as JSON, nothing as "".

    A call whose key is missing still runs in order with the other keyless calls (they
    all hash to one partition) rather than being refused.
    """
    try:
        value: Any = key.evaluate({"request": msgspec.to_builtins(request)})
    except ExpressionError:
        return ""
    if value is None:
        return ""
    return value if isinstance(value, str) else _json.encode(value).decode()
