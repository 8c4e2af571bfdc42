"""Caller bodies and headers are bounded without recursion: ingress/parse.py and ingress/rejections.py."""

from __future__ import annotations

import pytest

from ingress.errors import MalformedBody, UnsupportedMediaType
from ingress.parse import json_depth, parse_body
from ingress.rejections import HEADER_BUDGET, LEFT_OUT, MAX_HEADERS, redacted_headers


def test_json_nested_50000_deep_is_refused_without_recursion() -> None:
    with pytest.raises(MalformedBody, match=r"^the body is nested deeper than 128 levels$"):
        parse_body(b"[" * 50_000 + b"]" * 50_000, "application/json", None)


def test_the_depth_limit_counts_objects_and_arrays_alike() -> None:
    body = b'{"a":' * 64 + b"[" * 64 + b"]" * 64 + b"}" * 64
    assert parse_body(body, "application/json", None)[0] == "json"
    with pytest.raises(MalformedBody):
        parse_body(b"[" + body + b"]", "application/json", None)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    body = b'["' + b"[{" * 200 + b'", "a\\"[[[", "x\\\\", {"k[": "}}"}]'
    assert json_depth(body) == 2
    assert parse_body(body, "application/json", None)[0] == "json"


def test_the_integer_bounds_themselves_and_booleans_pass() -> None:
    body = b"[18446744073709551615, -9223372036854775808, true, 1.5e300]"
    assert parse_body(body, "application/json", None) == (
        "json",
        [18446744073709551615, -9223372036854775808, True, 1.5e300],
    )


def test_a_charset_is_looked_up_by_its_codec_name() -> None:
    assert parse_body("é".encode("cp1252"), "text/plain", 'text/plain; charset="Windows-1252"') == (
        "text",
        "é",
    )
    with pytest.raises(UnsupportedMediaType):
        parse_body(b"a..b", "text/plain", "text/plain; charset=punycode")


def test_a_rejection_keeps_few_headers_within_its_budget() -> None:
    headers = {f"X-H{i}": "v" * 600 for i in range(10_000)}
    kept = redacted_headers({"Authorization": "Bearer s3cret", **headers}, frozenset())
    assert kept["authorization"] == "<redacted>"
    assert len(kept) <= MAX_HEADERS + 1
    assert sum(len(k) + len(v) for k, v in kept.items() if k != LEFT_OUT) <= HEADER_BUDGET
    assert int(kept[LEFT_OUT]) == 10_001 - (len(kept) - 1)
