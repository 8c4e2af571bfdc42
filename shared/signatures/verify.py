"""HMAC webhook signatures: `verify()` checks a request against a SignatureScheme and
`sign()`, its twin, produces the headers a sender following that scheme sends."""

from __future__ import annotations

import base64
import binascii
import hmac
import math
from collections.abc import Mapping, Sequence
from typing import Literal

from shared.errors import HooklineError
from shared.signatures.scheme import SignatureScheme

__all__ = ["Reason", "SignatureInvalid", "SignatureScheme", "secret_bytes", "sign", "verify"]

Reason = Literal[
    "missing-header",  # the signature header, the id header or a {header:...} is absent
    "bad-encoding",  # no signature with the expected prefix, not hex/base64, wrong length,
    # or a timestamp that is not decimal seconds
    "mismatch",  # no signature matches any secret
    "timestamp-missing",
    "timestamp-stale",
    "timestamp-future",
]

_MAX_TIMESTAMP_DIGITS = 12  # seconds until the year 33658; longer is not a timestamp


class SignatureInvalid(HooklineError):
    """Raised when a request's signature is missing, malformed, wrong or outside the window.

    `reason` is for logs and metrics only; the message never says which part was wrong.
    """

    problem_type = "unauthorized"

    def __init__(self, reason: Reason, *, header: str | None = None, skew: int | None = None) -> None:
        super().__init__("invalid signature")
        self.reason: Reason = reason
        self.header = header  # the header that was missing (or malformed), as the scheme spells it
        self.skew = skew  # seconds the signed timestamp is behind (+) or ahead of (-) our clock


# --- verify ---------------------------------------------------------------------------


def verify(
    scheme: SignatureScheme,
    secrets: Sequence[bytes],
    body: bytes,
    headers: Mapping[str, str],
    now: float,
) -> None:
    """Check a request's signature; raise SignatureInvalid when it does not hold.

    `headers` has lower-case keys; `now` is seconds since the epoch. Any secret (key
    rotation) may match any signature in the header. The signature is checked before the
    timestamp's age, so "timestamp-stale" means an authentic but old (replayed) request.
    """
    if not secrets:
        raise ValueError("verify needs at least one secret")
    items = _items(scheme, _header(headers, scheme.header))
    timestamp = _timestamp(scheme, headers, items)
    signatures = _signatures(scheme, items)
    fields = _fields(scheme, headers, timestamp)
    try:
        content = _content(scheme, body, fields)
    except UnicodeEncodeError:
        raise SignatureInvalid("bad-encoding") from None
    if not _matches(scheme, secrets, content, signatures):
        raise SignatureInvalid("mismatch")
    if timestamp is not None:
        age = now - int(timestamp)
        if age > scheme.tolerance:
            raise SignatureInvalid("timestamp-stale", skew=math.floor(age))
        if age < -scheme.tolerance:
            raise SignatureInvalid("timestamp-future", skew=math.floor(age))


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if value is None or not value.strip():
        raise SignatureInvalid("missing-header", header=name)
    return value


def _items(scheme: SignatureScheme, value: str) -> list[str]:
    if scheme.separator is None:
        return [value.strip()]
    return [item.strip() for item in value.split(scheme.separator) if item.strip()]


def _timestamp(scheme: SignatureScheme, headers: Mapping[str, str], items: list[str]) -> str | None:
    if scheme.timestamp_header is not None:
        where = scheme.timestamp_header
        found = [headers.get(scheme.timestamp_header.lower(), "").strip()]
    elif scheme.timestamp_item is not None:
        tag = scheme.timestamp_item
        where = f"{scheme.header} ({tag}...)"
        found = [item.removeprefix(tag) for item in items if item.startswith(tag)]
    else:
        return None
    if not found or not found[0]:
        raise SignatureInvalid("timestamp-missing", header=where)
    # Two timestamps in one header are ambiguous: refuse rather than pick one.
    if len(found) > 1 or not _is_seconds(found[0]):
        raise SignatureInvalid("bad-encoding", header=where)
    return found[0]


def _is_seconds(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= _MAX_TIMESTAMP_DIGITS


def _signatures(scheme: SignatureScheme, items: list[str]) -> list[bytes]:
    """Decode every item that carries a signature; undecodable ones are skipped."""
    decoded = [
        _decode(scheme, item[len(scheme.prefix) :])
        for item in items
        if item.startswith(scheme.prefix)
        and not (scheme.timestamp_item and item.startswith(scheme.timestamp_item))
    ]
    signatures = [d for d in decoded if d is not None]
    if not signatures:
        raise SignatureInvalid("bad-encoding", header=scheme.header)
    return signatures


def _decode(scheme: SignatureScheme, text: str) -> bytes | None:
    try:
        raw = binascii.unhexlify(text) if scheme.encoding == "hex" else base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        return None
    return raw if len(raw) == scheme.digest_size else None


def _fields(scheme: SignatureScheme, headers: Mapping[str, str], timestamp: str | None) -> dict[str, str]:
    fields: dict[str, str] = {}
    if timestamp is not None:
        fields["timestamp"] = timestamp
    if scheme.id_header is not None:
        fields["id"] = _header(headers, scheme.id_header)
    for part in scheme.parts:
        if isinstance(part, str) and part.startswith("header:"):
            fields[part] = _header(headers, part.removeprefix("header:"))
    return fields


def _content(scheme: SignatureScheme, body: bytes, fields: Mapping[str, str]) -> list[bytes]:
    """The signed content as pieces, so the body is hashed in place, never copied."""
    pieces: list[bytes] = []
    for part in scheme.parts:
        if isinstance(part, bytes):
            pieces.append(part)
        else:
            pieces.append(body if part == "body" else fields[part].encode("latin-1"))
    return pieces


def _mac(scheme: SignatureScheme, secret: bytes, content: list[bytes]) -> bytes:
    mac = hmac.new(secret, digestmod=scheme.algorithm)
    for piece in content:
        mac.update(piece)
    return mac.digest()


def _matches(
    scheme: SignatureScheme,
    secrets: Sequence[bytes],
    content: list[bytes],
    signatures: list[bytes],
) -> bool:
    for secret in secrets:
        expected = _mac(scheme, secret, content)
        if any(hmac.compare_digest(expected, signature) for signature in signatures):
            return True
    return False


# --- sign -----------------------------------------------------------------------------


def sign(
    scheme: SignatureScheme,
    secret: bytes,
    body: bytes,
    now: float,
    msg_id: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers a sender following `scheme` sends with `body` at time `now`.

    Header names are spelled as in the scheme. `msg_id` is required when the scheme signs
    an id; `headers` gives the values of any {header:Name} the template signs (they are
    returned too, under lower-case names).
    """
    given = {name.lower(): value for name, value in (headers or {}).items()}
    out: dict[str, str] = {}
    fields: dict[str, str] = {}
    timestamp = str(math.floor(now))
    if scheme.timestamped:
        fields["timestamp"] = timestamp
    if scheme.timestamp_header is not None:
        out[scheme.timestamp_header] = timestamp
    if scheme.id_header is not None:
        if msg_id is None:
            raise ValueError(f"this scheme signs {scheme.id_header}: give a msg_id")
        out[scheme.id_header] = fields["id"] = msg_id
    for part in scheme.parts:
        if isinstance(part, str) and part.startswith("header:"):
            name = part.removeprefix("header:")
            if name not in given:
                raise ValueError(f"signed_content signs header {name}: give its value")
            out[name] = fields[part] = given[name]
    digest = _mac(scheme, secret, _content(scheme, body, fields))
    encoded = digest.hex() if scheme.encoding == "hex" else base64.b64encode(digest).decode()
    signature = scheme.prefix + encoded
    if scheme.timestamp_item is not None and scheme.separator is not None:
        signature = f"{scheme.timestamp_item}{timestamp}{scheme.separator}{signature}"
    out[scheme.header] = signature
    return out


def secret_bytes(scheme: SignatureScheme, secret: str) -> bytes:
    """The HMAC key for a configured secret: UTF-8, or base64 after `whsec_` for
    Standard Webhooks (Stripe's `whsec_...` secrets are used as they are, in UTF-8)."""
    if scheme.key_encoding == "utf-8":
        key = secret.encode()
    else:
        text = secret.removeprefix("whsec_")
        try:
            # Some senders hand out unpadded base64; the reference library pads it too.
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a standard-webhooks secret is `whsec_` and base64") from None
    if not key:
        raise ValueError("the secret is empty")
    return key
