"""Workflows and connections in the trigger file: what loads, and every mistake in full text."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.db.registry import spec_from_json, spec_to_json
from shared.errors import SpecError
from shared.spec.connections import HttpConnection, PostgresConnection
from shared.spec.loader import load_file, load_text
from shared.spec.steps import ConditionStep, HttpStep, MapStep, PythonStep, RespondStep, SqlStep, walk_steps

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

GOOD = """
workspace: shop
connections:
  erp: {type: postgres, dsn: "${env:ERP_DSN}"}
  crm: {type: http, base_url: "https://crm.example.com/api", headers: {Authorization: "Bearer ${env:CRM_TOKEN}"}}
triggers:
  - name: order
    auth: {type: none}
    mode: request_response
    workflow_timeout: 20s
    workflow:
      - id: payload
        map: {id: "{{ request.body.id }}", name: "{{ upper(request.body.name) }}"}
      - id: stock
        sql: {connection: erp, query: "select on_hand from stock where item = $1", params: ["{{ request.body.item }}"], timeout: 2s}
      - id: create
        http: {connection: crm, method: POST, path: /customers, json: "{{ steps.payload.output }}", expect: [201, 4xx]}
      - id: rows
        python: {step: csv, config: {delimiter: ";"}, input: "{{ request.body.csv }}"}
      - id: check
        condition:
          if: "{{ steps.create.output.status == `201` }}"
          then:
            - id: done
              respond: {status: 201, body: {id: "{{ steps.create.output.body.id }}"}}
          else:
            - respond: {status: 502, body: {error: "{{ steps.create.output.body }}"}}
"""


def test_a_workflow_with_every_step_kind_loads() -> None:
    [workspace] = load_text(GOOD)
    assert workspace.connections == {
        "erp": PostgresConnection(dsn="${env:ERP_DSN}"),
        "crm": HttpConnection(
            base_url="https://crm.example.com/api", headers={"Authorization": "Bearer ${env:CRM_TOKEN}"}
        ),
    }
    [trigger] = workspace.triggers
    assert trigger.workflow_timeout == 20.0
    kinds = [(type(s), s.id) for s in walk_steps(trigger.workflow)]
    assert kinds == [
        (MapStep, "payload"),
        (SqlStep, "stock"),
        (HttpStep, "create"),
        (PythonStep, "rows"),
        (ConditionStep, "check"),
        (RespondStep, "done"),
        (RespondStep, "check_else_1"),
    ]
    create = trigger.workflow[2]
    assert isinstance(create, HttpStep)
    assert (create.http.timeout, create.http.expect, create.http.url) == (10.0, [201, "4xx"], None)


def test_a_stored_workflow_decodes_to_the_same_trigger() -> None:
    # The registry stores triggers as JSON: `if`/`else` must survive the round trip.
    [workspace] = load_text(GOOD)
    [trigger] = workspace.triggers
    stored = spec_to_json(trigger)
    assert stored["workflow"][4]["condition"]["if"] == "{{ steps.create.output.status == `201` }}"
    assert spec_from_json(stored) == trigger


def test_the_workflow_timeout_defaults_to_a_minute() -> None:
    [workspace] = load_text("workspace: a\ntriggers: [{name: t, auth: {type: none}}]\n")
    assert workspace.triggers[0].workflow_timeout == 60.0


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_file_is_valid(path: Path) -> None:
    assert load_file(path)


FUNCTIONS = (
    "abs, avg, ceil, concat, contains, ends_with, floor, from_json, join, keys, length, lower, map, max, "
    "max_by, merge, min, min_by, not_null, now, replace, reverse, sort, sort_by, split, starts_with, sum, "
    "to_array, to_number, to_string, trim, type, upper, uuid, values"
)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            ("- id: rows\n        python:", "- id: rows\n        pyhton:"),
            "f.yaml: trigger order, step rows: unknown step kind (keys: pyhton); "
            "expected one of map, respond, http, sql, condition, python",
            id="unknown-step-kind",
        ),
        pytest.param(
            ('query: "select on_hand from stock where item = $1", ', ""),
            "f.yaml: trigger order, step stock, field sql: Object missing required field `query`",
            id="missing-field",
        ),
        pytest.param(
            ("expect: [201, 4xx]", "expct: [201, 4xx]"),
            "f.yaml: trigger order, step create, field http: Object contains unknown field `expct`",
            id="unknown-field",
        ),
        pytest.param(
            ("{{ request.body.id }}", "{{ request.body.[id }}"),
            "f.yaml: trigger order, step payload, field map.id: expression {{ request.body.[id }}: "
            'Invalid jmespath expression: Incomplete expression: "request.body.[id" ^',
            id="expression-syntax",
        ),
        pytest.param(
            ("{{ upper(request.body.name) }}", "{{ upper(request.body.name, 'x') }}"),
            "f.yaml: trigger order, step payload, field map.name: expression "
            "{{ upper(request.body.name, 'x') }}: upper() takes 1 argument, not 2",
            id="function-arity",
        ),
        pytest.param(
            ("{{ request.body.id }}", "{{ step.payload }}"),
            "f.yaml: trigger order, step payload, field map.id: expression {{ step.payload }}: "
            "unknown name `step`; an expression starts from request, execution, trigger, steps",
            id="expression-unknown-name",
        ),
        pytest.param(
            ("connection: erp,", "connection: erb,"),
            "f.yaml: trigger order, step stock, field sql.connection: "
            "unknown connection 'erb' (this document declares: crm, erp)",
            id="unknown-connection",
        ),
        pytest.param(
            ("connection: crm,", "connection: erp,"),
            "f.yaml: trigger order, step create, field http.connection: "
            "connection 'erp' is of type postgres; an http step needs one of type http",
            id="wrong-connection-type",
        ),
        pytest.param(
            ("- id: done", "- id: payload"),
            "f.yaml: trigger order: duplicate step id 'payload'",
            id="duplicate-id-across-branches",
        ),
        pytest.param(
            ("step: csv", "step: xls"),
            "f.yaml: trigger order, step rows, field python.step: unknown python step 'xls'; installed: csv",
            id="unknown-python-step",
        ),
        pytest.param(
            ('delimiter: ";"', "delimiter: 5"),
            "f.yaml: trigger order, step rows, field python.config.delimiter: Expected `str`, got `int`",
            id="python-config-type",
        ),
        pytest.param(
            ('delimiter: ";"', 'delimiter: ";", quote: "\'"'),
            "f.yaml: trigger order, step rows, field python.config: Object contains unknown field `quote`",
            id="python-config-unknown",
        ),
        pytest.param(
            ('item = $1"', "item = '{{ request.body.item }}'\""),
            "f.yaml: trigger order, step stock, field sql: "
            "`query` cannot hold expressions: write $1, $2, ... and put the values in `params`",
            id="sql-text-with-expression",
        ),
        pytest.param(
            ("connection: crm, method", "url: https://x.example, connection: crm, method"),
            "f.yaml: trigger order, step create, field http: give either `url` or `connection` (with `path`)",
            id="http-url-and-connection",
        ),
        pytest.param(
            ("expect: [201, 4xx]", "expect: [201, 6xx]"),
            "f.yaml: trigger order, step create, field http.expect[1]: Invalid enum value '6xx'",
            id="http-expect",
        ),
        pytest.param(
            ("timeout: 2s}", "timeout: 0}"),
            "f.yaml: trigger order, step stock, field sql: `timeout` must be more than 0",
            id="step-timeout",
        ),
        pytest.param(
            ("workflow_timeout: 20s", "workflow_timeout: 0s"),
            "f.yaml: trigger order: `workflow_timeout` must be more than 0",
            id="workflow-timeout",
        ),
        pytest.param(
            ('if: "{{ steps.create.output.status == `201` }}"', 'if: "yes"'),
            "f.yaml: trigger order, step check, field condition.if: must be one expression, such as {{ x == `1` }}",
            id="condition-if-not-an-expression",
        ),
        pytest.param(
            (
                'if: "{{ steps.create.output.status == `201` }}"',
                'if: "{{ request.body.a }} and {{ request.body.b }}"',
            ),
            "f.yaml: trigger order, step check, field condition.if: must be one expression, such as {{ x == `1` }}",
            id="condition-if-text-around-expressions",
        ),
        pytest.param(
            ("status: 502", "status: [1]"),
            "f.yaml: trigger order, step check, else, step check_else_1, field respond.status: "
            "Expected `int | str`, got `array`",
            id="error-inside-a-branch",
        ),
        pytest.param(
            (
                "    workflow_timeout: 20s\n",
                '    workflow_timeout: 20s\n    response: {body: {x: "{{ steps.a }}"}}\n',
            ),
            "f.yaml: trigger order, field response.body.x: expression {{ steps.a }}: "
            "unknown name `steps`; an expression starts from request, execution",
            id="async-response-sees-no-steps",
        ),
        pytest.param(
            ("expect: [201, 4xx]", 'expect: [201, 4xx], headers: {X-Key: "${env:CRM_TOKEN}"}'),
            "f.yaml: trigger order, step create, field http.headers.X-Key: ${env:...} is read only in "
            "connections; declare a connection that holds the secret and use it here",
            id="env-reference-in-a-step",
        ),
        pytest.param(
            ("Bearer ${env:CRM_TOKEN}", "Bearer abc123"),
            "f.yaml: connection crm, field headers.Authorization: "
            "a credential must be an ${env:NAME} reference, never written in the file",
            id="literal-credential-header",
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', 'dsn: "postgresql://app:hunter2@db/erp"'),
            "f.yaml: connection erp, field dsn: "
            "the password must be an ${env:NAME} reference, never written in the file",
            id="literal-dsn-password",
        ),
        pytest.param(
            ('base_url: "https://crm.example.com/api"', 'base_url: "https://app:pw@crm.example.com/api"'),
            "f.yaml: connection crm, field base_url: "
            "the password must be an ${env:NAME} reference, never written in the file",
            id="literal-base-url-password",
        ),
        pytest.param(
            ("connection: crm, method: POST, path: /customers", 'url: "https://app:pw@crm.example.com/c"'),
            "f.yaml: trigger order, step create, field http.url: a password in a URL is a secret; "
            "use an http connection, whose headers can hold ${env:NAME} references",
            id="literal-url-password",
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', 'dsn: "${env:ERP-DSN}"'),
            "f.yaml: connection erp, field dsn: a secret is written ${env:NAME} (letters, digits, _)",
            id="malformed-env-reference",
        ),
        pytest.param(
            ("type: postgres", "type: mysql"),
            "f.yaml: connection erp, field type: Invalid value 'mysql'",
            id="unknown-connection-type",
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', "pool_size: 2"),
            "f.yaml: connection erp: Object missing required field `dsn`",
            id="connection-missing-field",
        ),
        pytest.param(
            ('base_url: "https://crm.example.com/api"', 'base_url: "ftp://crm"'),
            "f.yaml: connection crm, field base_url: must start with http:// or https://",
            id="connection-base-url",
        ),
    ],
)
def test_each_workflow_mistake_is_reported_with_its_place(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(SpecError) as raised:
        load_text(GOOD.replace(old, new, 1), source="f.yaml")
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("open('/etc/passwd')", f"unknown function open(); the functions are {FUNCTIONS}"),
        ("__import__('os').environ", f"unknown function __import__(); the functions are {FUNCTIONS}"),
        ("env.HOME", "unknown name `env`; an expression starts from request, execution, trigger, steps"),
        ("environ", "unknown name `environ`; an expression starts from request, execution, trigger, steps"),
        (
            "__builtins__",
            "`__builtins__`: Python internals are not reachable; expressions read only the run's data",
        ),
        (
            "request.__class__.__mro__",
            "`__class__`: Python internals are not reachable; expressions read only the run's data",
        ),
        (
            "steps.x.output.__globals__",
            "`__globals__`: Python internals are not reachable; expressions read only the run's data",
        ),
    ],
)
def test_a_trigger_file_cannot_reach_files_the_environment_or_python(expression: str, reason: str) -> None:
    text = GOOD.replace("{{ request.body.id }}", f"{{{{ {expression} }}}}", 1)
    with pytest.raises(SpecError) as raised:
        load_text(text, source="evil.yaml")
    assert str(raised.value) == (
        f"evil.yaml: trigger order, step payload, field map.id: expression {{{{ {expression} }}}}: {reason}"
    )
