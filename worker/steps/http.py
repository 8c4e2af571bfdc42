"""`http`: call another system with the worker's httpx client; output {status, headers, body}.

The URL is `url`, or a connection's base URL with `path` (joined onto the base's path, the
base's query kept): values interpolated into a path are percent-encoded, and a value of only
dots (`.`, `..`) fails the step, so a value cannot climb out of its segment, even past a
server that normalises `%2E` to `.`; a URL that leaves the base URL is refused. A path that
is one value keeps its `/` as separators and what follows its `?` as a query (a `next`
link). In `url`, a value in the path is one segment, as in `path`, and a value after a `?` a
query value; a `url` that is one value is taken as a link, as it is.

Where the call goes: a connection's base URL, and a `url` whose origin the operator wrote out
(`hookline apply`, the admin token), are called as written; every other target (a
workspace token's `url`, an origin from an expression) goes through the egress-checked
client (worker/egress.py). Every failure to get an answer, a refusal included, fails the step
with one text, so a step cannot probe which internal ports are open. Connection headers and
credential-looking headers never reach the record, and the connection's secret values are
scrubbed from the answer; a status outside `expect` fails the step with the answer still
recorded as its output.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import msgspec

from shared.expressions import Expr, Interpolation, compile_template, render
from shared.runtime import tracing
from shared.spec.connections import is_credential_header
from shared.spec.egress import Origin, literal_origin
from shared.spec.steps import HttpCall, HttpStep, status_listed
from worker.steps.base import HttpTarget, RunContext, StepFailed, scrub, scrub_value

# An answer is read into memory to become the output: past this, the step fails instead.
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
MAX_PORT = 65535
REDACTED = "[redacted]"
# The one text of every failure to get an answer: a refused address, a closed port and a
# server that hung up look alike to the workflow (the worker's log tells the operator which).
UNREACHABLE = "no answer (the address is not allowed, or the connection failed)"
_json = msgspec.json.Encoder()
log = logging.getLogger(__name__)


class HttpRunner:
    """Renders the request, sends it, and turns the answer into the step's output."""

    kind = "http"
    suspends = True

    def __init__(self, step: HttpStep) -> None:
        call: HttpCall = step.http
        self.id = step.id
        self.timeout: float | None = call.timeout
        self._call = call
        self.effects = call.method not in ("GET", "HEAD")
        self.retry = step.retry
        # No httpx timeouts: they bound each read and write, not the call. The engine bounds
        # the whole call (connect, send, read) by the step's `timeout`.
        self._timeout = httpx.Timeout(None)
        self._url = compile_template(call.url)
        self._origin: Origin | None = literal_origin(call.url) if call.url is not None else None
        self._path = compile_template(call.path)
        self._headers = compile_template(call.headers)
        self._query = compile_template(call.query)
        self._json = compile_template(call.json)
        self._body = compile_template(call.body)

    async def run(self, context: RunContext) -> Any:
        resources = context.need_resources()
        data = context.data
        target = HttpTarget("", {}, "", ())
        if self._call.connection is not None:
            target = await resources.http_target(context.workspace, self._call.connection)
            context.secrets.update(target.secrets)
            try:
                path = _render_path(self._path, data, target.base_url)
            except _DotSegment as exc:
                raise StepFailed(f"path: a value may not be `{exc}`") from None
            except _BadURL as exc:
                raise StepFailed(scrub(f"path: {exc}", target.secrets)) from None
            url, shown_url = _join(target.base_url, path), _join(target.shown_base_url, path)
        else:
            try:
                url = shown_url = _render_url(self._url, data)
            except _DotSegment as exc:
                raise StepFailed(f"url: a value may not be `{exc}`") from None
        headers = {**target.headers, **_texts(render(self._headers, data))}
        key = self._idempotency_key(headers, target, data)
        content = self._content(data, headers)
        query = _query(render(self._query, data))
        method = self._call.method
        where = f"{method} {shown_url}"
        context.detail = {
            "request": scrub_value(
                {
                    "method": method,
                    "url": shown_url,
                    "query": [list(pair) for pair in query],
                    # The idempotency key is no secret: shown, to match what the target logged.
                    "headers": _redact(headers, set(target.headers)) | key,
                },
                target.secrets,
            )
        }
        try:
            address = _address(url, query, target)
        except _BadURL as exc:
            raise StepFailed(scrub(f"{where}: {exc}", target.secrets)) from None
        # A connection's origin is the operator's (`_address` kept the call under it); so is a
        # written-out origin in an operator's version, if the rendered URL kept it.
        trusted = self._call.connection is not None or (
            context.operator_written and self._origin is not None and _has_origin(address, self._origin)
        )
        client = resources.http if trusted else resources.guarded(context.workspace)
        if tracing.on:
            # After the record's copy of the headers: the record shows what the step set.
            tracing.calling(headers, method, address.scheme, address.host, address.port)
        try:
            output = await _send(client, method, address, headers, content, self._timeout)
        except httpx.HTTPError as exc:
            log.warning(
                "http step %s of workspace %s got no answer: %s",
                self.id,
                context.workspace,
                scrub(f"{type(exc).__name__}: {exc}", target.secrets),
            )
            cause = "connection" if isinstance(exc, httpx.TransportError) else None
            raise StepFailed(scrub(f"{where}: {UNREACHABLE}", target.secrets), cause=cause) from None
        except _TooLarge:
            raise StepFailed(f"{where}: the answer is larger than {MAX_RESPONSE_BYTES} bytes") from None
        # A target may echo a credential back (a 401 quoting the key it refused): the record
        # keeps a scrubbed copy, while later steps read the answer as it came (a `next` link
        # under the base URL, an id that happens to contain the port).
        recorded = scrub_value(output, target.secrets)
        if tracing.on:
            tracing.called(output["status"])
        if not _expected(output["status"], self._call.expect):
            wanted = ", ".join(str(e) for e in self._call.expect)
            message = f"{where} answered {output['status']}; expected {wanted}"
            raise StepFailed(message, recorded, status=output["status"])
        context.recorded_output = recorded
        return output

    def _idempotency_key(
        self, headers: dict[str, str], target: HttpTarget, data: dict[str, Any]
    ) -> dict[str, str]:
        """Add `<execution id>:<step id>`, the same on every attempt and redelivery of this
        step, unless the step's own headers set it or the step or its connection turned it
        off; the header added ({} if none)."""
        step_header = self._call.idempotency_header
        name = target.idempotency_header if step_header is msgspec.UNSET else step_header
        if name is None or any(k.lower() == name.lower() for k in headers):
            return {}
        headers[name] = f"{data['execution']['id']}:{self.id}"
        return {name: headers[name]}

    def _content(self, data: dict[str, Any], headers: dict[str, str]) -> bytes | None:
        has_type = any(k.lower() == "content-type" for k in headers)
        if self._call.json is not None:
            if not has_type:
                headers["Content-Type"] = "application/json"
            return _json.encode(render(self._json, data))
        if self._call.body is not None:
            if not has_type:
                headers["Content-Type"] = "text/plain; charset=utf-8"
            return str(render(self._body, data)).encode()
        return None


class _TooLarge(Exception):
    """Raised while reading an answer past MAX_RESPONSE_BYTES."""


class _DotSegment(Exception):
    """Raised when a value rendered into a path segment is only dots (`.`, `..`, ...)."""


class _BadURL(Exception):
    """Raised when the URL to call is not one (or leaves its connection's base URL)."""


def _address(
    url: str, query: list[tuple[str, str | int | float | bool | None]], target: HttpTarget
) -> httpx.URL:
    """The URL to call, query merged; _BadURL if invalid or outside the connection's base URL."""
    try:
        # httpx's `params` replaces a query already written in the URL; merging keeps both.
        address = httpx.URL(url).copy_merge_params(query) if query else httpx.URL(url)
        base = httpx.URL(target.base_url) if target.base_url else None
    except httpx.InvalidURL as exc:
        raise _BadURL(f"invalid URL: {exc}") from None
    # httpx accepts any port number; the socket call would fail later with an OverflowError.
    if address.port is not None and address.port > MAX_PORT:
        raise _BadURL(f"invalid URL: port {address.port} is above {MAX_PORT}")
    # httpx removes dot-segments, so a literal `..` in `path` can still climb: check the result.
    if base is not None and not _within(address, base):
        raise _BadURL(f"path: the URL leaves the connection's base URL {target.shown_base_url}")
    return address


def _has_origin(address: httpx.URL, origin: Origin) -> bool:
    port = address.port or (443 if address.scheme == "https" else 80)
    return (address.scheme, address.host, port) == (origin.scheme, origin.host, origin.port)


def _within(address: httpx.URL, base: httpx.URL) -> bool:
    """Same scheme, host and port as `base`, and a path under its path (queries aside)."""
    if (address.scheme, address.host, address.port) != (base.scheme, base.host, base.port):
        return False
    prefix = _normalised(base.raw_path.partition(b"?")[0].decode()).rstrip("/")
    path = _normalised(address.raw_path.partition(b"?")[0].decode())
    return path == prefix or path.startswith(prefix + "/")


def _normalised(path: str) -> str:
    """`path` as a normalising server or proxy reads it (RFC 3986): `%2E` is `.`, no dot-segments."""
    out: list[str] = []
    for segment in re.sub("%2e", ".", path, flags=re.IGNORECASE).split("/"):
        if segment == "..":
            if len(out) > 1:
                out.pop()
        elif segment != ".":
            out.append(segment)
    return "/".join(out)


async def _send(
    client: httpx.AsyncClient,
    method: str,
    target: httpx.URL,
    headers: dict[str, str],
    content: bytes | None,
    limits: httpx.Timeout,
) -> dict[str, Any]:
    request = client.build_request(method, target, headers=headers, content=content, timeout=limits)
    response = await client.send(request, stream=True)
    try:
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise _TooLarge
            chunks.append(chunk)
    finally:
        await response.aclose()
    return {
        "status": response.status_code,
        "headers": _redact(dict(response.headers), set()),
        "body": _body(b"".join(chunks), response),
    }


def _body(raw: bytes, response: httpx.Response) -> Any:
    """JSON parsed when the answer says it is JSON (and is), otherwise text; nothing is None."""
    if not raw:
        return None
    if "json" in response.headers.get("content-type", "").lower():
        try:
            return msgspec.json.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            pass  # a server that mislabels its answer: keep the text
    return raw.decode(response.encoding or "utf-8", errors="replace")


def _render_path(path: Any, data: dict[str, Any], base_url: str = "") -> str:
    """The path: each value one segment; a path that is one value, one segment per `/` in it.

    A one-value path is taken as a link (a pagination `next`): what follows its first `?` is
    kept as a query, as written; a fragment is dropped, as no request sends one; a full URL
    under the base URL, or a path that repeats the base URL's path, is cut to the part after
    the base (a link elsewhere is refused); `%XX` already in it is kept, not encoded again.
    """
    if isinstance(path, Interpolation):
        out: list[str] = []
        in_query = False  # after a `?` written in `path`, a value is a query value: dots are fine
        for part in path.parts:
            if isinstance(part, str):
                out.append(part)
                in_query = in_query or "?" in part
            else:
                text = _text(part.evaluate(data))
                out.append(quote(text, safe="") if in_query else _segment(text))
        return "".join(out)
    if isinstance(path, Expr):
        link = _after_base(_text(path.evaluate(data)).partition("#")[0], base_url)
        text, mark, query = link.partition("?")
        return "/".join(_link_segment(part) for part in text.split("/")) + mark + query
    return str(path or "")


def _after_base(link: str, base_url: str) -> str:
    """`link` relative to the base URL: `https://api.x/v1/items?page=2` or `/v1/items?page=2`
    under base `https://api.x/v1` both become `/items?page=2`; other paths are left as they are."""
    base = urlsplit(base_url)
    base_path = base.path.rstrip("/")
    if "://" in link:
        parts = urlsplit(link)
        same_origin = (parts.scheme.lower(), parts.netloc.lower()) == (
            base.scheme.lower(),
            base.netloc.lower(),
        )
        if not same_origin or not (parts.path == base_path or parts.path.startswith(base_path + "/")):
            raise _BadURL("the link leaves the connection's base URL")
        rest = parts.path[len(base_path) :]
        return f"{rest}?{parts.query}" if parts.query else rest
    if base_path and (link == base_path or link.startswith((base_path + "/", base_path + "?"))):
        return link[len(base_path) :]
    return link


def _link_segment(part: str) -> str:
    """A segment of a link, its `%XX` kept; an encoded `/` may not hide a dot-segment either
    (`a%2F..%2F..` is `a/../..` to a server that decodes it)."""
    decoded = unquote(part)
    for piece in decoded.split("/")[1:] if "/" in decoded else ():
        if piece and piece.strip(".") == "":
            raise _DotSegment(piece)
    return _segment(decoded)


def _segment(text: str) -> str:
    """`text` percent-encoded to stay in its path segment; _DotSegment if it is only dots.

    Encoding dots is not enough: under RFC 3986 `%2E` is `.`, so a normalising server or
    proxy would still climb. Any run of dots is refused, so two values side by side (or a
    value beside a written dot) make no `..` either.
    """
    if text and text.strip(".") == "":
        raise _DotSegment(text)
    return quote(text, safe="")


def _render_url(url: Any, data: dict[str, Any]) -> str:
    """`url` rendered: one value is a link, taken as it is; among text, a value in the
    authority is written as it is, one in the path is one segment (`_segment`: encoded, never
    only dots), one after a `?` (or `#`) a query value (`&`, `=`, `#` encoded)."""
    if not isinstance(url, Interpolation):
        return str(render(url, data))
    out: list[str] = []
    for part in url.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        text = _text(part.evaluate(data))
        where = _url_part("".join(out))
        out.append(
            text if where == "authority" else _segment(text) if where == "path" else quote(text, safe="")
        )
    return "".join(out)


def _url_part(rendered: str) -> str:
    """Which part of a URL text that starts with `rendered` comes next: authority, path or query."""
    _, sep, rest = rendered.partition("://")
    if not sep:
        return "authority"
    if "?" in rest or "#" in rest:
        return "query"
    return "path" if "/" in rest else "authority"


def _join(base: str, path: str) -> str:
    """`path` joined onto `base`'s path; the base's query first, then the path's."""
    base, _, base_query = base.partition("#")[0].partition("?")
    path, _, path_query = path.partition("?")
    url = f"{base.rstrip('/')}/{path.lstrip('/')}" if path else base
    query = "&".join(q for q in (base_query, path_query) if q)
    return f"{url}?{query}" if query else url


def _texts(values: dict[str, Any]) -> dict[str, str]:
    return {str(k): _text(v) for k, v in values.items() if v is not None}


def _query(values: dict[str, Any]) -> list[tuple[str, str | int | float | bool | None]]:
    """Pairs for httpx: a list gives the parameter once per item; null leaves it out."""
    pairs: list[tuple[str, str | int | float | bool | None]] = []
    for key, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                pairs.append((str(key), _text(item)))
    return pairs


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return _json.encode(value).decode()


def _redact(headers: dict[str, str], secret_names: set[str]) -> dict[str, str]:
    """Values of connection headers and of credential-looking headers replaced."""
    secret = {name.lower() for name in secret_names}
    return {k: REDACTED if k.lower() in secret or is_credential_header(k) else v for k, v in headers.items()}


def _expected(status: int, expect: Sequence[int | str]) -> bool:
    return status_listed(status, expect)
