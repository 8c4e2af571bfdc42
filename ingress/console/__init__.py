"""The web console at `/console`: server-rendered pages (Jinja2, autoescaped) and a little JS.

Everything shown may come from a caller (bodies, headers, query values), so every value
goes through Jinja2's autoescaping, and a strict Content-Security-Policy allows only this
console's own script and style files: no inline script can run even if escaping failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from jinja2 import Environment, PackageLoader, select_autoescape
from litestar import Request, Response, Router
from litestar.datastructures import ResponseHeader
from litestar.di import Provide
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from ingress.api.access import MAX_BODY_BYTES, provide_access
from ingress.console.deadletters import DeadLetterController
from ingress.console.runs import RunController
from ingress.console.session import NotSignedIn, provide_csrf, same_console, signed_in
from ingress.console.signin import SignInController
from ingress.console.triggers import TriggerController
from ingress.problems import status_of
from shared.errors import HooklineError

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    ResponseHeader(name="Content-Security-Policy", value=CSP),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="no-referrer"),
    ResponseHeader(name="Cache-Control", value="no-store"),
]


def pretty(value: Any) -> str:
    """A value as indented JSON (bytes show as base64, as they are stored)."""
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def console_templates() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja2 with autoescaping on for every template, whatever its name."""
    environment = Environment(
        loader=PackageLoader("ingress.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    environment.filters["pretty"] = pretty
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def _to_sign_in(_: Request[Any, Any, Any], __: NotSignedIn) -> Response[Any]:
    return Redirect("/console/login")


def _error_page(_: Request[Any, Any, Any], exc: HooklineError) -> Response[Any]:
    return Template(template_name="error.html", context={"message": str(exc)}, status_code=status_of(exc))


def _bad_value(_: Request[Any, Any, Any], __: asyncpg.DataError) -> Response[Any]:
    # Input PostgreSQL cannot take (a NUL character in a path or a filter) is the caller's.
    return Template(
        template_name="error.html", context={"message": "a value cannot be used as given"}, status_code=400
    )


def _no_such_file(_: Request[Any, Any, Any], __: ValueError) -> Response[Any]:
    return Template(template_name="error.html", context={"message": "no such file"}, status_code=404)


def console_router() -> Router:
    """Pages, forms and static files under `/console`; all but signing in need a session."""
    static = create_static_files_router(
        path="/static",
        directories=[Path(__file__).parent / "static"],
        # A NUL in the file name makes os.stat raise ValueError: no such file, not a 500.
        exception_handlers={ValueError: _no_such_file},
    )
    signed = Router(
        path="/",
        route_handlers=[RunController, TriggerController, DeadLetterController],
        # Written once for every page and form: a live session, then (forms) its CSRF value.
        guards=[signed_in, same_console],
        dependencies={
            "access": Provide(provide_access, sync_to_thread=False),
            "csrf": Provide(provide_csrf, sync_to_thread=False),
        },
    )
    return Router(
        path="/console",
        request_max_body_size=MAX_BODY_BYTES,
        route_handlers=[SignInController, signed, static],
        response_headers=HEADERS,
        exception_handlers={
            NotSignedIn: _to_sign_in,
            HooklineError: _error_page,
            asyncpg.DataError: _bad_value,
        },
        include_in_schema=False,
    )
