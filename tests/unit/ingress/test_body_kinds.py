"""What a call's body becomes under `request.body`, by its content type (README "Triggers":
JSON parsed, forms parsed, XML and text kept as text, anything else as bytes)."""

from __future__ import annotations

from typing import Any

import pytest

from ingress.errors import MalformedBody, UnsupportedMediaType
from ingress.parse import json_depth, media_type, parse_body


def kind_of(body: bytes, content_type: str | None) -> tuple[str, Any]:
    return parse_body(body, media_type(content_type), content_type)


@pytest.mark.parametrize(
    ("body", "content_type", "parsed"),
    [
        (b"", "application/json", ("empty", None)),
        (b'{"a": [1, true]}', "application/json", ("json", {"a": [1, True]})),
        (b'{"a": 1}', "application/vnd.api+json; charset=utf-8", ("json", {"a": 1})),
        (
            b"a=1&b=&a=2&a=3&c=x%20y",
            "application/x-www-form-urlencoded",
            ("form", {"a": ["1", "2", "3"], "b": "", "c": "x y"}),
        ),
        (b"<a>1</a>", "application/xml", ("text", "<a>1</a>")),
        (b"<a>1</a>", "application/atom+xml", ("text", "<a>1</a>")),
        (b"caf\xc3\xa9", "text/plain", ("text", "café")),
        (b"caf\xe9", 'text/plain; charset="ISO-8859-1"', ("text", "café")),
        (b"caf\xe9", "text/plain; format=flowed; charset=latin-1", ("text", "café")),
        (b"caf\xe9", "text/plain", ("bytes", b"caf\xe9")),  # not UTF-8: kept as it came
        (b"\x00\x01", "application/octet-stream", ("bytes", b"\x00\x01")),
        (b"\x00\x01", None, ("bytes", b"\x00\x01")),
        (b'{"a": 1}', "application/jsonx", ("bytes", b'{"a": 1}')),
    ],
)
def test_each_content_type_gives_its_kind_of_body(
    body: bytes, content_type: str | None, parsed: tuple[str, Any]
) -> None:
    assert kind_of(body, content_type) == parsed


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"a": ', "application/json", "the body is not valid JSON: Input data was truncated"),
        (b"a=\xff", "application/x-www-form-urlencoded", "the form body is not UTF-8"),
    ],
)
def test_a_body_that_does_not_parse_as_its_type_is_refused(
    body: bytes, content_type: str, message: str
) -> None:
    with pytest.raises(MalformedBody) as refused:
        kind_of(body, content_type)
    assert str(refused.value) == message


def test_an_unknown_charset_is_refused_naming_it() -> None:
    with pytest.raises(UnsupportedMediaType) as refused:
        kind_of(b"x", "text/plain; charset=klingon")
    assert str(refused.value) == "charset 'klingon' is not supported; use utf-8"


def test_a_body_nested_exactly_to_the_limit_is_taken_and_one_deeper_refused() -> None:
    at_limit = b"[" * 4 + b"]" * 4
    assert parse_body(at_limit, "application/json", None, max_depth=4) == ("json", [[[[]]]])
    with pytest.raises(MalformedBody) as refused:
        parse_body(b"[" + at_limit + b"]", "application/json", None, max_depth=4)
    assert str(refused.value) == "the body is nested deeper than 4 levels"
    # Brackets inside strings do not count; a flat body has depth 1, an empty one 0.
    assert parse_body(b'["[[[[[[", "{{{{{"]', "application/json", None, max_depth=2)[0] == "json"
    assert (json_depth(b"[1, 2]"), json_depth(b"1"), json_depth(b'"[["')) == (1, 0, 0)
