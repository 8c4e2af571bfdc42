"""`{{ }}` templates: JMESPath values with their types, text interpolation, clear errors."""

from __future__ import annotations

import pytest

from shared.errors import ExpressionError
from shared.expressions import compile_template, render

DATA = {"request": {"query": {"x": "1"}, "body": {"a": 1, "items": [{"n": 2}, {"n": 3}]}}, "steps": {}}


def test_a_whole_expression_keeps_its_type() -> None:
    assert render(compile_template("{{ request.body.a }}"), DATA) == 1
    assert render(compile_template("{{ request.body.items[].n }}"), DATA) == [2, 3]
    assert render(compile_template("{{ request.body }}"), DATA) == DATA["request"]["body"]


def test_text_around_expressions_makes_a_string() -> None:
    template = compile_template(
        "x={{ request.query.x }}, a={{ request.body.a }}, items={{ request.body.items }}"
    )
    assert render(template, DATA) == 'x=1, a=1, items=[{"n":2},{"n":3}]'


def test_templates_inside_objects_and_lists() -> None:
    template = compile_template(
        {"id": "{{ request.body.a }}", "list": ["{{ request.query.x }}", 5], "fixed": True}
    )
    assert render(template, DATA) == {"id": 1, "list": ["1", 5], "fixed": True}


def test_missing_values_are_null_not_errors() -> None:
    assert render(compile_template("{{ request.body.nothing.here }}"), DATA) is None
    assert render(compile_template("[{{ request.body.nothing }}]"), DATA) == "[]"


def test_a_syntax_error_names_the_expression() -> None:
    with pytest.raises(ExpressionError) as raised:
        compile_template({"a": "{{ request.[ }}"})
    assert str(raised.value).startswith("expression {{ request.[ }}: ")


def test_an_evaluation_error_names_the_expression() -> None:
    template = compile_template("{{ abs(request.query.x) }}")
    with pytest.raises(ExpressionError) as raised:
        render(template, DATA)
    assert str(raised.value).startswith("expression {{ abs(request.query.x) }}: ")


@pytest.mark.parametrize(
    "source",
    ["{{ __import__('os') }}", "{{ request.__class__ }}", "{{ open('/etc/passwd') }}", "{{ env.HOME }}"],
)
def test_expressions_cannot_reach_python_files_or_the_environment(source: str) -> None:
    try:
        value = render(compile_template(source), DATA)
    except ExpressionError:
        return
    assert value is None
