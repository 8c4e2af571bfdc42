"""Nested query parameters (`filter[status]=paid`, `ids[]=1&ids[]=2`): declared in the trigger
file, parsed with qs-codec, each value typed and checked, the errors naming the parameter."""

from __future__ import annotations

import pytest

from ingress.errors import BadRequest, InvalidParameter
from ingress.parse import parse_query
from shared.errors import SpecError
from shared.spec.loader import load_text

FILE = """
workspace: shop
triggers:
  - name: orders
    auth: {type: none}
    extra_query: reject
    query:
      filter:
        type: object
        required: true
        properties:
          status: {required: true}
          min: {type: integer, default: 0}
      ids: {type: array, items: {type: integer}}
      tags: {type: array}
      page: {type: integer}
"""


def _declared() -> tuple[dict, str]:  # type: ignore[type-arg]
    [workspace] = load_text(FILE)
    trigger = workspace.triggers[0]
    return trigger.query, trigger.extra_query


def test_brackets_make_objects_and_lists_typed_as_declared() -> None:
    query, extra = _declared()
    parsed = parse_query("filter[status]=paid&ids[]=1&ids[]=22&tags=a&tags=b&page=3", query, extra)
    assert parsed == {"filter": {"status": "paid", "min": 0}, "ids": [1, 22], "tags": ["a", "b"], "page": 3}
    assert parse_query("filter[status]=new&ids=7", query, extra) == {
        "filter": {"status": "new", "min": 0},
        "ids": [7],
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("page=1", "query parameter 'filter' is required"),
        ("filter[min]=2", "query parameter 'filter[status]' is required"),
        ("filter=paid", "query parameter 'filter' must be an object: write filter[key]=value"),
        ("filter[status]=p&filter[min]=x", "query parameter 'filter[min]' must be an integer, got 'x'"),
        ("filter[status]=p&ids[]=1&ids[]=two", "query parameter 'ids[1]' must be an integer, got 'two'"),
        ("filter[status]=p&filter[colour]=red", "query parameter 'filter[colour]' is not accepted here"),
        ("filter[status][x]=p", "query parameter 'filter[status]' must be a single value, not an object"),
        ("filter[status]=p&page[a]=1", "query parameter 'page' must be a single value, not an object"),
    ],
)
def test_a_wrong_value_is_refused_naming_its_parameter(text: str, message: str) -> None:
    query, extra = _declared()
    with pytest.raises(InvalidParameter) as caught:
        parse_query(text, query, extra)
    assert str(caught.value) == message


def test_deep_or_long_nesting_is_refused_not_built() -> None:
    query, extra = _declared()
    with pytest.raises(BadRequest) as caught:
        parse_query("filter[status]=p&" + "&".join(f"ids[]={i}" for i in range(101)), query, extra)
    assert str(caught.value) == "the query string nests deeper than 5 brackets or lists more than 100 items"
    with pytest.raises(BadRequest):
        parse_query("filter[status][a][b][c][d][e][f]=1", query, extra)


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("{type: object}", "a query parameter of type object declares its `properties`"),
        ("{type: string, items: {type: integer}}", "`items` belong to a query parameter of type array"),
        ("{type: array, properties: {a: {}}}", "`properties` belong to a query parameter of type object"),
        ("{type: array, items: {type: array}}", "`items` cannot be arrays themselves"),
        ("{type: object, properties: {a: {type: integer, default: x}}}", "default 'x' is not a integer"),
    ],
)
def test_a_wrong_declaration_is_refused_when_applied(param: str, message: str) -> None:
    text = f"workspace: w\ntriggers:\n  - name: t\n    auth: {{type: none}}\n    query:\n      p: {param}\n"
    with pytest.raises(SpecError) as caught:
        load_text(text, source="f.yaml")
    assert message in str(caught.value)
