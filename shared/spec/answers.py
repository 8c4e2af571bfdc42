"""What a workflow may answer a caller: a final status, and headers that are safe to write.

Checked at apply where the file writes them out (shared/spec/checks.py) and again on every
answer a run or an async `response` renders (worker/steps/respond.py, ingress/hooks.py):
a 1xx written as a final answer desyncs a keep-alive proxy, a CR or LF in a header value
is response splitting, and hop-by-hop headers or `Set-Cookie` from a tenant's workflow
would speak for hookline's own connection or origin. Each check returns the reason, or None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# RFC 9110 5.6.2: field-name = token = 1*tchar.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 5.5: a field value is visible characters, space and tab, and obs-text (latin-1
# above 0x7f); CR, LF, NUL and the other controls never.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# The connection's own headers (RFC 9110 7.6.1, 11.7.1) and the cookies of the ingress's
# origin (the console's too): never a workflow's to set.
RESERVED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "content-length",
        "set-cookie",
    }
)
# Statuses that carry no content (RFC 9110 15.3.5, 15.4.5).
_NO_CONTENT = frozenset({204, 304})


def status_problem(status: int) -> str | None:
    """Why `status` cannot be a final answer, or None (200-599 only: a 1xx is never final)."""
    if not 200 <= status <= 599:
        return f"status {status} cannot answer a call (an integer from 200 to 599)"
    return None


def body_problem(status: int, body: Any) -> str | None:
    """Why `body` cannot go with `status`, or None (a 204 or 304 has no body)."""
    if status in _NO_CONTENT and body not in (None, "", b""):
        return f"a {status} answer has no body"
    return None


def header_problem(name: str, value: str | None = None) -> str | None:
    """Why header `name` (with `value`, when known) cannot be sent, or None."""
    if not _TOKEN.fullmatch(name):
        return f"header name {name!r} is not a valid HTTP header name"
    if name.lower() in RESERVED_HEADERS:
        return f"header {name} cannot be set by a workflow"
    if value is not None and not _FIELD_VALUE.fullmatch(value):
        return (
            f"header {name}: the value holds a character an HTTP header cannot carry "
            "(CR, LF, NUL or another control, or one outside latin-1)"
        )
    return None


def answer_problem(status: int, headers: Mapping[str, str], body: Any) -> str | None:
    """The first reason the answer (status, headers, body) cannot be sent, or None."""
    problem = status_problem(status) or body_problem(status, body)
    if problem is not None:
        return problem
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is not None:
            return problem
    return None
