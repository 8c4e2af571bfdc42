"""Declared query parameters: numbers as JSON writes them, nothing Python's int()/float() also take."""

from __future__ import annotations

import pytest

from ingress.errors import InvalidParameter
from ingress.parse import parse_query
from shared.spec.model import QueryParam


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("integer", "42", 42),
        ("integer", "-7", -7),
        ("integer", "007", 7),
        ("number", "-1.5", -1.5),
        ("number", ".5", 0.5),
        ("number", "2e3", 2000.0),
        ("boolean", "yes", True),
        ("boolean", "0", False),
        ("boolean", "TRUE", True),
        ("boolean", "On", True),
        ("boolean", "off", False),
        ("boolean", "False", False),
        ("boolean", "NO", False),
        ("string", " as sent ", " as sent "),
    ],
)
def test_a_well_written_value_takes_its_type(kind: str, text: str, value: object) -> None:
    parsed = parse_query(f"p={text.replace(' ', '%20')}", {"p": QueryParam(type=kind)}, "reject")  # type: ignore[arg-type]
    assert parsed == {"p": value}
    assert type(parsed["p"]) is type(value)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("integer", "1_000"),
        ("integer", "%2B7"),  # +7
        ("integer", "%204"),  # padded
        ("integer", "%D9%A4%D9%A2"),  # Arabic-Indic 42
        ("integer", "1.0"),
        ("integer", ""),
        ("number", "nan"),
        ("number", "inf"),
        ("number", "1e999"),
        ("number", "1_0"),
        ("boolean", "maybe"),
    ],
)
def test_anything_else_is_refused_naming_the_parameter(kind: str, text: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        parse_query(f"p={text}", {"p": QueryParam(type=kind)}, "reject")  # type: ignore[arg-type]
    assert refused.value.parameter == "p"
    assert "'p'" in str(refused.value)


@pytest.mark.parametrize("kind", ["string", "integer", "number", "boolean"])
def test_a_declared_parameter_given_twice_is_refused_naming_it(kind: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        parse_query("p=1&p=1", {"p": QueryParam(type=kind)}, "pass")  # type: ignore[arg-type]
    assert refused.value.parameter == "p"
    assert str(refused.value) == "query parameter 'p' is given more than once"


def test_undeclared_parameters_pass_through_or_are_refused_as_the_trigger_says() -> None:
    declared = {"id": QueryParam(type="integer", required=True), "name": QueryParam(default="TheCompany")}
    assert parse_query("id=7&utm=x&utm=y", declared, "pass") == {
        "id": 7,
        "name": "TheCompany",
        "utm": ["x", "y"],
    }
    with pytest.raises(InvalidParameter) as refused:
        parse_query("id=7&utm=x", declared, "reject")
    assert refused.value.parameter == "utm"
    with pytest.raises(InvalidParameter) as missing:
        parse_query("name=x", declared, "pass")
    assert missing.value.parameter == "id"
