"""`{{ }}` templates: JMESPath values with their types, text interpolation, clear errors."""

from __future__ import annotations

import re
from typing import Any

import jmespath
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import ExpressionError
from shared.expressions import compile_expression, compile_template, render, steps_read

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


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (None, ""),
        (0, "0"),
        (-1.5, "-1.5"),
        ("as is", "as is"),
        ({"k": [1, None]}, '{"k":[1,null]}'),
    ],
)
def test_a_value_inside_text_is_written_as_json_writes_it(value: object, text: str) -> None:
    # Booleans as JSON writes them (`true`), never Python's `True`; nothing as "".
    assert (
        render(compile_template("<{{ request.body.v }}>"), {"request": {"body": {"v": value}}}) == f"<{text}>"
    )


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
    ("source", "reason"),
    [
        ("{{ __import__('os') }}", "unknown function __import__(); the functions are "),
        ("{{ open('/etc/passwd') }}", "unknown function open(); the functions are "),
        (
            "{{ env.HOME }}",
            "unknown name `env`; an expression starts from request, execution, trigger, steps, error",
        ),
        (
            "{{ request.__class__ }}",
            "`__class__`: Python internals are not reachable; expressions read only the run's data",
        ),
    ],
)
def test_expressions_cannot_reach_python_files_or_the_environment(source: str, reason: str) -> None:
    with pytest.raises(ExpressionError) as raised:
        compile_template(source)
    assert str(raised.value).startswith(f"expression {source}: {reason}")


def test_names_inside_projections_and_filters_are_not_roots() -> None:
    template = compile_template("{{ request.body.items[?n > `2`].n | [0] }}")
    assert render(template, DATA) == 3
    assert render(compile_template("{{ max_by(request.body.items, &n).n }}"), DATA) == 3
    assert render(compile_template("{{ {q: request.query.x, all: @.steps} }}"), DATA) == {"q": "1", "all": {}}


def test_the_roots_can_be_narrowed() -> None:
    with pytest.raises(ExpressionError) as raised:
        compile_template("{{ steps.a }}", roots=("request", "execution"))
    assert str(raised.value) == (
        "expression {{ steps.a }}: unknown name `steps`; an expression starts from request, execution"
    )


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("{{ upper('abc') }}", "ABC"),
        ("{{ lower(request.query.name) }}", "sold"),
        ("{{ trim('  x ') }}", "x"),
        ("{{ concat('id-', request.body.a, '-', `true`, `null`) }}", "id-1-true"),
        ("{{ split('a,b,,c', ',') }}", ["a", "b", "", "c"]),
        ("{{ replace('a-b-c', '-', '+') }}", "a+b+c"),
        ("{{ from_json('{\"k\": [1, 2]}').k[1] }}", 2),
        ("{{ to_number(request.query.x) }}", 1),
        ("{{ length(uuid()) }}", 36),
    ],
)
def test_hooklines_functions(source: str, value: object) -> None:
    data = {**DATA, "request": {**DATA["request"], "query": {"x": "1", "name": "SOLD"}}}
    assert render(compile_template(source), data) == value


def test_now_is_utc_iso_8601() -> None:
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", render(compile_template("{{ now() }}"), DATA)
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{{ from_json('nope') }}",
            "expression {{ from_json('nope') }}: from_json(): the text is not valid JSON",
        ),
        ("{{ split('a', '') }}", "expression {{ split('a', '') }}: split(): the separator must not be empty"),
        (
            "{{ upper(request.body.a) }}",
            "expression {{ upper(request.body.a) }}: In function upper(), invalid type for value: 1, "
            "expected one of: ['string'], received: \"number\"",
        ),
    ],
)
def test_function_errors_name_the_expression(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as raised:
        render(compile_template(source), DATA)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("source", "body", "message"),
    [
        pytest.param(
            "{{ max_by(request.body.a, &n) }}",
            {"a": [{"n": 1}, {"n": "x"}]},
            "expression {{ max_by(request.body.a, &n) }}: '>' not supported between instances of 'str' and 'int'",
            id="type-error",
        ),
        pytest.param(
            "{{ ceil(to_number(request.body.a)) }}",
            {"a": "1e999"},
            "expression {{ ceil(to_number(request.body.a)) }}: cannot convert float infinity to integer",
            id="overflow",
        ),
    ],
)
def test_pythons_own_errors_inside_functions_name_the_expression(
    source: str, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ExpressionError) as raised:
        render(compile_template(source), {"request": {"body": body}})
    assert str(raised.value) == message


@pytest.mark.parametrize("source", ["{{ request.body.a[::0] }}", "{{ request.body.a[1:2:0] }}"])
def test_a_slice_step_of_zero_is_refused_when_compiled(source: str) -> None:
    with pytest.raises(ExpressionError) as raised:
        compile_template(source)
    assert str(raised.value) == f"expression {source}: a slice step cannot be 0"


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ('{"a": {"b": 1}}', '{"a": {"b": 1}}'),
        ('{"a": {"b": "{{ request.body.x }}"}}', '{"a": {"b": "7"}}'),
        ('{{ request.body.x }}"}}', '7"}}'),
        ("request.body.x }}", "request.body.x }}"),
        ("{{ request.body.x }} }}", "7 }}"),
        ("{{ request.body.x }", "{{ request.body.x }"),
        ("a {{ request.body.x", "a {{ request.body.x"),
        ("x: {{ request.body.x }}, {{ name", "x: 7, {{ name"),
    ],
)
def test_braces_outside_expressions_are_text_so_a_stored_trigger_always_compiles(
    template: str, rendered: str
) -> None:
    # The first `}}` after a `{{` closes it; an unclosed `{{` is refused only at apply.
    compiled = compile_template({"body": template})
    assert render(compiled, {"request": {"body": {"x": 7}}}) == {"body": rendered}


@pytest.mark.parametrize(
    ("source", "ids"),
    [
        ("steps.create.output.body.id", ["create"]),
        ("steps.create", ["create"]),
        ("steps.rows[0].n", ["rows"]),
        ("steps.rows.output[*].n", ["rows"]),
        ("steps | create.output", ["create"]),
        ("@.steps.create", ["create"]),
        ("steps.a.output || steps.b.output", ["a", "b"]),
        ("{x: steps.a.output, y: length(steps.b.output)}", ["a", "b"]),
        ("steps.a.output.steps.b", ["a"]),  # `steps` inside a step's output is data
        ("request.body.steps.a", []),
        ("map(&steps.a, request.body.items)", []),  # `&` reads each item, not the run's data
        ("steps", []),
        ("steps.*.output", []),
    ],
)
def test_the_steps_an_expression_reads(source: str, ids: list[str]) -> None:
    assert steps_read(compile_expression(source)) == ids


def test_values_interpolated_into_text_can_be_escaped() -> None:
    template = compile_template("/items/{{ request.query.x }}/{{ request.body.name }}")
    data = {**DATA, "request": {**DATA["request"], "body": {"name": "a/b c"}}}
    assert (
        template.evaluate(data, escape=lambda t: t.replace("/", "%2F").replace(" ", "%20"))
        == "/items/1/a%2Fb%20c"
    )


_ROOTS = ("a", "b", "body", "n")
_NAMES = st.sampled_from(_ROOTS)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NAMES, inner, max_size=3),
    max_leaves=12,
)


# Generating nested values is slow on a busy 2-core machine; the property, not the speed, is tested.
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.dictionaries(_NAMES, _VALUES, max_size=3), path=st.lists(_NAMES, min_size=1, max_size=4))
def test_a_dotted_path_gives_what_jmespath_gives(data: dict[str, Any], path: list[str]) -> None:
    # `a.b.c` is looked up without JMESPath's tree walk; it must agree with JMESPath on any data.
    source = ".".join(path)
    expression = compile_expression(source, roots=_ROOTS)
    assert expression.path == tuple(path)
    assert expression.evaluate(data) == jmespath.search(source, data)
    request = {"request": data}
    assert compile_expression("request." + source).evaluate(request) == jmespath.search(
        "request." + source, request
    )
