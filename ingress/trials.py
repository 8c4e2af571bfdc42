"""Try a trigger: one real call through this ingress's own hot path, authenticated as the
trigger wants, and its answer (status, headers, body, time) with the execution it made.

The call goes through the whole Litestar application in this process (httpx's ASGI
transport), so it meets exactly the registry that was checked: the short-lived key made for
an `api_key` trigger is known here before the call is sent, and removed after it. That key
is never shown, stored in plain text or logged; a key left behind by a crash is one nobody
ever saw. An `hmac` call is signed with the trigger's own (first) secret; a Basic one
sends the configured password when it was written as a reference (a literal one is kept
only as its hash: such a try is given the password).
What the caller did not give (method, query, headers, body: all four) is the last sample's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import qs_codec
from litestar import Litestar

from ingress.auth.api_key import ApiKeys
from ingress.auth.basic import BasicCredentials
from ingress.auth.hmac import HmacSignature
from ingress.errors import BadRequest
from ingress.registry import TriggerEntry, TriggerRegistry
from ingress.rejections import REDACTED
from shared.db.keys import create_key
from shared.db.pool import DB_ERRORS, Connection
from shared.db.triggers import Sample
from shared.errors import DatabaseUnavailable
from shared.ids import key_digest
from shared.signatures.verify import sign
from shared.spec.model import BasicAuth
from shared.spec.secrets import MissingSecret

MAX_ANSWER_BODY = 65_536  # characters of the answer's body shown
KEY_LABEL = "try (temporary)"
KEY_WAIT = 5.0  # seconds the registry may take to load the temporary key
_REDACTED = "<redacted>"
_json = msgspec.json.Encoder()
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,256}")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]{0,8192}")
_QS_ENCODE = qs_codec.EncodeOptions(encode_values_only=True, list_format=qs_codec.ListFormat.REPEAT)


class TryUnavailable(DatabaseUnavailable):
    """Raised when the temporary key of a try is not in the registry in time (503: try again)."""


class TryCall(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What to send; none of method, query, headers and body given: the last sample's."""

    method: str | None = None
    query: str | dict[str, str | list[str]] | None = None  # `a[b]=1&c=2`, or name -> value(s)
    headers: dict[str, str] | None = None
    body: str | None = None
    password: str | None = None  # Basic only: instead of the configured one (needed when that was a literal)


class SentCall(msgspec.Struct, kw_only=True):
    """The call as sent, credentials shown as `<redacted>`."""

    method: str
    url: str
    headers: dict[str, str]
    body_bytes: int
    from_sample: bool
    authenticated_with: str  # "temporary api key", "hmac signature", "basic", "none"


class TryAnswer(msgspec.Struct, kw_only=True):
    """The ingress's answer, and the execution the call made (if it made one)."""

    status: int
    headers: dict[str, str]
    body: str
    body_truncated: bool
    time_ms: float
    execution_id: str | None
    execution_url: str | None
    console_url: str | None
    sent: SentCall


class Prepared(msgspec.Struct, kw_only=True):
    method: str
    query: str
    headers: dict[str, str]
    body: bytes
    from_sample: bool


def prepare(call: TryCall, sample: Sample | None) -> Prepared:
    """The call to send: as given, or (nothing given) the last sample's request."""
    given = (call.method, call.query, call.headers, call.body)
    if all(part is None for part in given) and sample is not None:
        request = sample.request
        headers = dict(request.get("headers") or {})
        if request.get("content_type"):
            headers["content-type"] = request["content_type"]
        return Prepared(
            method=request.get("method") or "POST",
            query=query_string(request.get("query") or {}),
            headers=headers,
            body=sample_body(request.get("body_kind", "empty"), request.get("body")),
            from_sample=True,
        )
    headers = {name.strip().lower(): value for name, value in (call.headers or {}).items()}
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
            raise BadRequest(
                f"header {name[:40]!r} cannot be sent: a token name and a printable value, please"
            )
    try:
        body = (call.body or "").encode()
    except UnicodeEncodeError:
        raise BadRequest("the body is not valid Unicode text") from None
    if body and "content-type" not in headers:
        headers["content-type"] = "application/json" if _is_json(body) else "text/plain; charset=utf-8"
    method = (call.method or "POST").upper()
    if not method.isalpha() or len(method) > 16:
        raise BadRequest(f"method {method[:20]!r} is not an HTTP method")
    return Prepared(
        method=method,
        query=query_string(call.query or ""),
        headers=headers,
        body=body,
        from_sample=False,
    )


def query_string(query: str | dict[str, Any]) -> str:
    """A query string; a dict (a sample's, nested or not) written as `qs` reads it back:
    objects with brackets (`a[b]=1`), lists by repeating the name (`a=1&a=2`, which a flat
    trigger reads as a list too)."""
    if isinstance(query, str):
        return query.removeprefix("?")
    plain = {k: _text(v) for k, v in query.items()}
    return str(qs_codec.encode(plain, _QS_ENCODE))


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return {k: _text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text(v) for v in value]
    return "" if value is None else str(value)


def sample_body(kind: str, body: Any) -> bytes:
    """A sample's parsed body as bytes again (JSON re-encoded, a form re-encoded)."""
    if kind == "json":
        return _json.encode(body)
    if kind == "text":
        return str(body).encode()
    if kind == "form":
        pairs = [(k, v) for k, vs in (body or {}).items() for v in (vs if isinstance(vs, list) else [vs])]
        return urlencode(pairs).encode()
    if kind == "bytes" and isinstance(body, str):
        with contextlib.suppress(ValueError):
            return base64.b64decode(body)
    return b""


def _is_json(body: bytes) -> bool:
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError:
        return False
    return True


Database = Callable[[], contextlib.AbstractAsyncContextManager[Connection]]


@contextlib.asynccontextmanager
async def temporary_key(
    database: Database, registry: TriggerRegistry, entry: TriggerEntry
) -> AsyncIterator[str]:
    """A new key of this trigger, known to this process's registry, deleted on the way out.

    No connection is held while the call runs (the pool is small; the call may wait for a run).
    """
    async with database() as connection:
        created = await create_key(connection, entry.workspace, [entry.name], KEY_LABEL)
    try:
        digest = key_digest(created.key)
        deadline = time.monotonic() + KEY_WAIT
        while not _knows(registry, entry, digest):
            # The registry reloads on the key's notification (milliseconds, ingress/registry.py).
            if time.monotonic() > deadline:
                raise TryUnavailable("the temporary key did not reach the registry in time; try again")
            await asyncio.sleep(0.02)
        yield created.key
    finally:
        await asyncio.shield(_delete_key(database, created.id))


def _knows(registry: TriggerRegistry, entry: TriggerEntry, digest: bytes) -> bool:
    live = registry.get(entry.workspace, entry.name)
    return live is not None and digest in live.key_digests


async def _delete_key(database: Database, key_id: uuid.UUID) -> None:
    async with database() as connection, connection.transaction():
        await connection.execute("delete from api_key_triggers where key_id = $1", key_id)
        await connection.execute("delete from api_keys where id = $1", key_id)


async def basic_password(registry: TriggerRegistry, entry: TriggerEntry, given: str | None) -> str:
    """The password a Basic try sends: the one given, else the configured one.

    Only a password written as `${env:NAME}` or `${secret:NAME}` can be had again (it is
    resolved now, as the trigger's author may); a literal one is kept only as its hash.
    """
    if given is not None:
        return given
    auth = entry.spec.auth
    reference = auth.password_ref if isinstance(auth, BasicAuth) else None
    if reference is None:
        raise BadRequest(
            "this trigger's Basic password was written out and is kept only as its hash: give `password`"
        )
    try:
        sources = await registry.sources(entry)
    except DB_ERRORS:
        raise DatabaseUnavailable("the database is unreachable right now") from None
    try:
        return sources.resolve(reference)
    except MissingSecret as exc:
        raise BadRequest(f"the trigger's password cannot be had now: {exc}") from None


def credentials(
    entry: TriggerEntry, prepared: Prepared, key: str | None, password: str | None
) -> tuple[dict[str, str], str]:
    """The headers that authenticate the call as the trigger wants, and how (for the answer)."""
    auth = entry.auth
    if isinstance(auth, ApiKeys):
        assert key is not None
        return {"x-api-key": key}, "temporary api key"
    if isinstance(auth, HmacSignature):
        scheme = auth.scheme
        msg_id = f"try_{uuid.uuid4().hex}" if scheme.id_header is not None else None
        try:
            signed = sign(
                scheme, auth.secrets[0], prepared.body, time.time(), msg_id, headers=prepared.headers
            )
        except ValueError as exc:  # a {header:Name} the scheme signs was not given
            raise BadRequest(f"cannot sign this call: {exc}") from None
        return {name.lower(): value for name, value in signed.items()}, "hmac signature"
    if isinstance(auth, BasicCredentials):
        assert password is not None
        pair = f"{auth.username}:{password}".encode()
        return {"authorization": "Basic " + base64.b64encode(pair).decode()}, "basic"
    return {}, "none"


async def send(
    app: Litestar,
    base_url: str,
    entry: TriggerEntry,
    prepared: Prepared,
    auth_headers: dict[str, str],
    how: str,
) -> TryAnswer:
    """Send the call through the application itself and read its answer."""
    path = f"/hooks/{entry.workspace}/{entry.name}"
    url = path + (f"?{prepared.query}" if prepared.query else "")
    headers = {**prepared.headers, **auth_headers}
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # Litestar's scope types are narrower
    async with httpx.AsyncClient(
        transport=transport, base_url=base_url, timeout=entry.spec.timeout + 10
    ) as client:
        started = time.perf_counter()
        try:
            answer = await client.request(prepared.method, url, headers=headers, content=prepared.body)
        except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
            raise BadRequest("this call cannot be sent as given (its query or a header)") from None
        elapsed = (time.perf_counter() - started) * 1000
    text = answer.content.decode("utf-8", errors="replace")
    execution_id = execution_of(answer)
    return TryAnswer(
        status=answer.status_code,
        headers=dict(answer.headers),
        body=text[:MAX_ANSWER_BODY],
        body_truncated=len(text) > MAX_ANSWER_BODY,
        time_ms=round(elapsed, 1),
        execution_id=execution_id,
        execution_url=f"{base_url}/api/executions/{execution_id}" if execution_id else None,
        console_url=f"{base_url}/console/executions/{execution_id}" if execution_id else None,
        sent=SentCall(
            method=prepared.method,
            url=base_url + url,
            headers={
                k: (
                    _REDACTED
                    if k in auth_headers or k in entry.auth.credential_headers or k in REDACTED
                    else v
                )
                for k, v in headers.items()
            },
            body_bytes=len(prepared.body),
            from_sample=prepared.from_sample,
            authenticated_with=how,
        ),
    )


async def try_trigger(
    app: Litestar,
    base_url: str,
    database: Database,
    registry: TriggerRegistry,
    entry: TriggerEntry,
    prepared: Prepared,
    password: str | None,
) -> TryAnswer:
    """Send `prepared` authenticated as the trigger wants: a temporary key (deleted after),
    the configured Basic password (or `password`, for one written out literally), the HMAC
    signature, or nothing. The API's and the console's try both come here."""
    async with contextlib.AsyncExitStack() as scope:
        key = None
        if isinstance(entry.auth, ApiKeys):
            key = await scope.enter_async_context(temporary_key(database, registry, entry))
        basic = None
        if isinstance(entry.auth, BasicCredentials):
            basic = await basic_password(registry, entry, password)
        auth_headers, how = credentials(entry, prepared, key, basic)
        return await send(app, base_url, entry, prepared, auth_headers, how)


def execution_of(answer: httpx.Response) -> str | None:
    """The execution a call made: `X-Execution-Id` (request-response), else the status URL."""
    found = answer.headers.get("x-execution-id")
    if found:
        return str(found)
    location = answer.headers.get("location", "")
    _, marker, rest = location.rpartition("/executions/")
    return rest or None if marker else None
