"""The ordering key's text form, as README "Ordering" documents it: text as is, other values
as JSON, nothing as ""."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ExpressionError
from shared.wire.messages import RequestData
from shared.wire.ordering import compile_key, ordering_key_value


def key_of(source: str, body: Any) -> str:
    return ordering_key_value(compile_key(source), RequestData(method="POST", path="/", body=body))


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"customer": "c-1"}, "c-1"),
        ({"customer": 'say "hi"'}, 'say "hi"'),
        ({"customer": ""}, ""),
        ({"customer": 42}, "42"),
        ({"customer": True}, "true"),
        ({"customer": {"id": 1}}, '{"id":1}'),
        ({"customer": [1, "a"]}, '[1,"a"]'),
        ({"customer": None}, ""),
        ({}, ""),
        ("not an object", ""),
    ],
)
def test_text_is_the_key_as_is_other_values_json_nothing_empty(body: Any, key: str) -> None:
    assert key_of("request.body.customer", body) == key


def test_the_key_may_be_written_in_braces_and_reads_only_the_request() -> None:
    assert key_of("{{ request.body.customer }}", {"customer": "c-1"}) == "c-1"
    assert key_of("{{request.body.customer}}", {"customer": "c-1"}) == "c-1"
    # Braces on one side only are not stripped: the expression is refused as written.
    with pytest.raises(ExpressionError, match=r"Unexpected token: \}"):
        compile_key("request.body.customer }}")
    with pytest.raises(ExpressionError):
        compile_key("steps.first.output")


def test_a_key_that_fails_to_evaluate_is_empty_so_the_call_still_runs_in_order() -> None:
    assert key_of("upper(request.body.customer)", {"customer": 5}) == ""
