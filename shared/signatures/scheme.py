"""SignatureScheme: where a sender puts its webhook signature, what it signs, how it writes it.

The signed content is a template (`signed_content`) with these placeholders, nothing else:

    {body}           the raw request body, as bytes (never decoded); exactly once
    {timestamp}      the timestamp, exactly as sent (decimal seconds since the epoch)
    {id}             the message id, from `id_header`
    {header:Name}    the value of any request header, e.g. {header:X-Request-Id}
    {{  }}           a literal brace

Literal text is hashed as UTF-8; header values (timestamp, id, headers) as the bytes that
came over the wire, i.e. the `latin-1` encoding of the decoded header string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

Algorithm = Literal["sha256", "sha1", "sha512"]
Encoding = Literal["hex", "base64"]
KeyEncoding = Literal["utf-8", "whsec-base64"]
# One piece of the signed content: literal bytes, or a placeholder name
# ("body", "timestamp", "id", "header:<lower-case name>").
Part = bytes | str

_DIGEST_SIZES: Mapping[str, int] = {"sha256": 32, "sha1": 20, "sha512": 64}
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # an RFC 9110 token


@dataclass(frozen=True, kw_only=True)
class SignatureScheme:
    """Where a sender puts its signature, what it signs and how it writes the digest.

    The signature header holds either one signature (`separator` is None) or a list of
    items split on `separator`; items starting with `prefix` are signatures (several are
    allowed: key rotation), others are ignored (other versions, such as Stripe's `v0=`).
    The timestamp comes from `timestamp_header`, or from the list item starting with
    `timestamp_item` (Stripe's `t=`). `signed_content` defaults to "{timestamp}.{body}" when
    there is a timestamp and "{body}" otherwise; a timestamp must be signed, else it
    would not protect against replays.
    """

    header: str
    algorithm: Algorithm = "sha256"
    encoding: Encoding = "hex"
    prefix: str = ""
    separator: str | None = None
    timestamp_header: str | None = None
    timestamp_item: str | None = None
    id_header: str | None = None
    signed_content: str | None = None
    tolerance: float = 300.0
    key_encoding: KeyEncoding = "utf-8"
    parts: tuple[Part, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_fields()
        default = "{timestamp}.{body}" if self.timestamped else "{body}"
        parts = compile_template(self.signed_content or default)
        self._check_placeholders(parts)
        object.__setattr__(self, "parts", parts)

    @property
    def timestamped(self) -> bool:
        """Whether requests carry a timestamp that is signed and checked for freshness."""
        return self.timestamp_header is not None or self.timestamp_item is not None

    @property
    def digest_size(self) -> int:
        """Length in bytes of one digest."""
        return _DIGEST_SIZES[self.algorithm]

    def describe(self) -> str:
        """What a sender must send, for a refused sender to compare with (no secret in it).

        `X-Slack-Signature: v0=<hex hmac-sha256 of "v0:{timestamp}:{body}">, timestamp in
        X-Slack-Request-Timestamp (within 300 s)`.
        """
        content = self.signed_content or ("{timestamp}.{body}" if self.timestamped else "{body}")
        value = f'{self.prefix}<{self.encoding} hmac-{self.algorithm} of "{content}">'
        if self.timestamp_item is not None:
            value = f"{self.timestamp_item}<timestamp>{self.separator}{value}"
        text = f"{self.header}: {value}"
        if self.timestamp_header is not None:
            text += f", timestamp in {self.timestamp_header}"
        if self.id_header is not None:
            text += f", id in {self.id_header}"
        if self.timestamped:
            text += f" (within {self.tolerance:g} s)"
        return text

    def _check_fields(self) -> None:
        if self.algorithm not in get_args(Algorithm):
            raise ValueError(f"unknown algorithm {self.algorithm!r}")
        if self.encoding not in get_args(Encoding):
            raise ValueError(f"unknown encoding {self.encoding!r}")
        for name in (self.header, self.timestamp_header, self.id_header):
            if name is not None and not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"invalid header name {name!r}")
        if self.separator == "" or self.timestamp_item == "":
            raise ValueError("separator and timestamp_item must not be empty")
        if self.timestamp_header is not None and self.timestamp_item is not None:
            raise ValueError("give timestamp_header or timestamp_item, not both")
        if self.timestamp_item is not None and self.separator is None:
            raise ValueError("timestamp_item needs a separator (a list-valued header)")
        if self.timestamped and not self.tolerance > 0:
            raise ValueError("tolerance must be positive")

    def _check_placeholders(self, parts: tuple[Part, ...]) -> None:
        names = [p for p in parts if isinstance(p, str)]
        if names.count("body") != 1:
            raise ValueError("signed_content must contain {body} exactly once")
        if self.timestamped != ("timestamp" in names):
            raise ValueError(
                "signed_content must contain {timestamp} when, and only when, "
                "timestamp_header or timestamp_item is set"
            )
        if (self.id_header is not None) != ("id" in names):
            raise ValueError("signed_content must contain {id} when, and only when, id_header is set")


def compile_template(template: str) -> tuple[Part, ...]:
    """Split a signed_content template into literal bytes and placeholder names."""
    parts: list[Part] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(template):
        literal.append(template[position : match.start()])
        position = match.end()
        token = match[0]
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if match[1] is None:
            raise ValueError(f"lone {token!r} in signed_content; write {token * 2!r} for a brace")
        if any(literal):
            parts.append("".join(literal).encode())
        literal = []
        parts.append(_placeholder(match[1]))
    literal.append(template[position:])
    if any(literal):
        parts.append("".join(literal).encode())
    return tuple(parts)


def _placeholder(name: str) -> str:
    if name in ("body", "timestamp", "id"):
        return name
    kind, _, header = name.partition(":")
    if kind == "header" and _HEADER_NAME.fullmatch(header):
        return f"header:{header.lower()}"
    raise ValueError(
        f"unknown placeholder {{{name}}} in signed_content; "
        "use {body}, {timestamp}, {id} or {header:Name}"
    )
