"""Workflows and connections in the trigger file: what loads, and every mistake in full text."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shared.db.registry import spec_from_json, spec_to_json
from shared.errors import SpecError
from shared.spec import plugins
from shared.spec.connection_uses import check_connection_uses
from shared.spec.connections import Connection, HttpConnection, PostgresConnection
from shared.spec.loader import load_file, load_text
from shared.spec.model import Trigger
from shared.spec.steps import ConditionStep, HttpStep, MapStep, PythonStep, RespondStep, SqlStep, walk_steps

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"

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


def test_a_failed_run_is_tried_three_times_by_default_backing_off_from_1s_to_5m() -> None:
    # docs/triggers.md: `retry` defaults to {max_attempts: 3, backoff: 1s, max_backoff: 5m, on_exhausted: skip}
    [workspace] = load_text("workspace: a\ntriggers: [{name: t, auth: {type: none}}]\n")
    retry = workspace.triggers[0].retry
    assert (retry.max_attempts, retry.backoff, retry.max_backoff, retry.on_exhausted) == (
        3,
        1.0,
        300.0,
        "skip",
    )


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
            (
                'respond: {status: 201, body: {id: "{{ steps.create.output.body.id }}"}}',
                'respond: {status: 201, body: {id: "{{ steps.create.output.body.id }}"}}\n'
                "            - id: late\n              map: {x: 1}",
            ),
            "f.yaml: trigger order, step check, then, step late: comes after step done (respond), "
            "which ends the run; it would never run",
            id="step-after-respond",
        ),
        pytest.param(
            ('base_url: "https://crm.example.com/api"', 'base_url: "https://crm.example.com:99999999/api"'),
            "f.yaml: connection crm, field base_url: not a valid URL (Port out of range 0-65535)",
            id="bad-base-url",
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', 'dsn: "postgresql://[::1/erp"'),
            "f.yaml: connection erp, field dsn: not a valid URL (Invalid IPv6 URL)",
            id="bad-dsn",
        ),
        pytest.param(
            (
                "connection: crm, method: POST, path: /customers,",
                'url: "http://[::1/customers", method: POST,',
            ),
            "f.yaml: trigger order, step create, field http.url: not a valid URL (Invalid IPv6 URL)",
            id="bad-url",
        ),
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
            "unknown name `step`; an expression starts from request, execution, trigger, steps, error",
            id="expression-unknown-name",
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
        pytest.param(
            ("status: 201", "status: abc"),
            "f.yaml: trigger order, step check, then, step done, field respond.status: "
            "'abc' is not a final HTTP status code (an integer from 200 to 599)",
            id="respond-status-not-a-number",
        ),
        pytest.param(
            ("status: 201", "status: 999"),
            "f.yaml: trigger order, step check, then, step done, field respond.status: "
            "999 is not a final HTTP status code (an integer from 200 to 599)",
            id="respond-status-out-of-range",
        ),
        pytest.param(
            ("status: 502", 'status: "99"'),
            "f.yaml: trigger order, step check, else, step check_else_1, field respond.status: "
            "'99' is not a final HTTP status code (an integer from 200 to 599)",
            id="respond-status-text-out-of-range",
        ),
        pytest.param(
            ('json: "{{ steps.payload.output }}"', 'json: "{{ steps.paylaod.output }}"'),
            "f.yaml: trigger order, step create, field http.json: expression {{ steps.paylaod.output }}: "
            "unknown step `paylaod`; the steps before this one are payload, stock",
            id="steps-unknown-id",
        ),
        pytest.param(
            ('params: ["{{ request.body.item }}"]', 'params: ["{{ steps.craete.output.body.id }}"]'),
            "f.yaml: trigger order, step stock, field sql.params[0]: expression "
            "{{ steps.craete.output.body.id }}: unknown step `craete`; the steps before this one are payload",
            id="steps-typo",
        ),
        pytest.param(
            ("{{ request.body.id }}", "{{ steps.rows.output }}"),
            "f.yaml: trigger order, step payload, field map.id: expression {{ steps.rows.output }}: "
            "step `rows` does not run before this one; no step runs before this one",
            id="steps-later-step",
        ),
        pytest.param(
            ('input: "{{ request.body.csv }}"', 'input: "rows of {{ steps.rows.output }}"'),
            "f.yaml: trigger order, step rows, field python.input: expression {{ steps.rows.output }}: "
            "step `rows` does not run before this one; the steps before this one are payload, stock, create",
            id="steps-own-output",
        ),
        pytest.param(
            ('error: "{{ steps.create.output.body }}"', 'error: "{{ steps.done.output }}"'),
            "f.yaml: trigger order, step check, else, step check_else_1, field respond.body.error: "
            "expression {{ steps.done.output }}: step `done` does not run before this one; "
            "the steps before this one are payload, stock, create, rows, check",
            id="steps-other-branch",
        ),
        pytest.param(
            ("connection: crm, method: POST, path: /customers", 'url: "file:///etc/passwd"'),
            "f.yaml: trigger order, step create, field http.url: must start with http:// or https://",
            id="http-url-file",
        ),
        pytest.param(
            ("connection: crm, method: POST, path: /customers", 'url: "ftp://crm.example.com/c"'),
            "f.yaml: trigger order, step create, field http.url: must start with http:// or https://",
            id="http-url-ftp",
        ),
        pytest.param(
            ("connection: crm, method: POST, path: /customers", 'url: "crm.example.com/customers"'),
            "f.yaml: trigger order, step create, field http.url: must start with http:// or https://",
            id="http-url-no-scheme",
        ),
        pytest.param(
            ("connection: crm, method: POST, path: /customers", 'url: "ftp://{{ request.body.host }}/c"'),
            "f.yaml: trigger order, step create, field http.url: must start with http:// or https://",
            id="http-url-ftp-around-an-expression",
        ),
        pytest.param(
            ('"{{ request.body.id }}"', '"{{ request.body.id }"'),
            "f.yaml: trigger order, step payload, field map.id: "
            "a `{{` is not closed by `}}`; an expression is written {{ expression }}",
            id="template-not-closed",
        ),
        pytest.param(
            ('"{{ request.body.id }}"', '"a {{ request.body.id"'),
            "f.yaml: trigger order, step payload, field map.id: "
            "a `{{` is not closed by `}}`; an expression is written {{ expression }}",
            id="template-not-closed-after-text",
        ),
        pytest.param(
            ('json: "{{ steps.payload.output }}"', 'body: \'{"a": {"b": 1}, "c": "{{ request.body.x"}\''),
            "f.yaml: trigger order, step create, field http.body: "
            "a `{{` is not closed by `}}`; an expression is written {{ expression }}",
            id="template-not-closed-in-a-json-body",
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', 'dsn: "postgresql://app@db:99999999/erp"'),
            "f.yaml: connection erp, field dsn: not a valid URL (Port out of range 0-65535)",
            id="bad-dsn-port",
        ),
        pytest.param(
            ('base_url: "https://crm.example.com/api"', 'base_url: "https://crm:pw@${env:CRM_HOST}/api"'),
            "f.yaml: connection crm, field base_url: "
            "the password must be an ${env:NAME} reference, never written in the file",
            id="base-url-password-beside-a-reference",
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', 'dsn: "postgresql://app:pw@${env:DB_HOST}:${env:DB_PORT}/erp"'),
            "f.yaml: connection erp, field dsn: "
            "the password must be an ${env:NAME} reference, never written in the file",
            id="dsn-password-beside-references",
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', 'dsn: "${env:HOOKLINE_DATABASE_URL}"'),
            "f.yaml: connection erp, field dsn: "
            "hookline's own settings cannot be referenced from a trigger file (${env:HOOKLINE_DATABASE_URL})",
            id="env-hookline-dsn",
        ),
        pytest.param(
            ("Bearer ${env:CRM_TOKEN}", "Bearer ${env:HOOKLINE_ADMIN_TOKEN}"),
            "f.yaml: connection crm, field headers.Authorization: "
            "hookline's own settings cannot be referenced from a trigger file (${env:HOOKLINE_ADMIN_TOKEN})",
            id="env-hookline-header",
        ),
        pytest.param(
            ('base_url: "https://crm.example.com/api"', 'base_url: "${env:HOOKLINE_AMQP_URL}"'),
            "f.yaml: connection crm, field base_url: "
            "hookline's own settings cannot be referenced from a trigger file (${env:HOOKLINE_AMQP_URL})",
            id="env-hookline-base-url",
        ),
        pytest.param(
            ("      - id: stock\n", "      - just text\n      - id: stock\n"),
            "f.yaml: trigger order, step 2: a step must be a mapping",
            id="step-not-a-mapping",
        ),
        pytest.param(
            ("- id: payload\n        map:", "- id: payload\n        respond: {status: 200}\n        map:"),
            "f.yaml: trigger order, step payload: one step has several kinds: respond, map",
            id="step-of-several-kinds",
        ),
        pytest.param(
            ("connection: crm, method: POST", "url: https://crm.example.com, method: POST"),
            "f.yaml: trigger order, step create, field http: "
            "`path` goes with `connection`; with `url`, write the whole URL",
            id="http-path-with-url",
        ),
        pytest.param(
            ('json: "{{ steps.payload.output }}"', 'json: "{{ steps.payload.output }}", body: "x"'),
            "f.yaml: trigger order, step create, field http: give either `json` or `body`, not both",
            id="http-json-and-body",
        ),
        pytest.param(
            ("expect: [201, 4xx]", "expect: []"),
            "f.yaml: trigger order, step create, field http: `expect` must list at least one status",
            id="http-expect-empty",
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', 'dsn: "mysql://app@db/erp"'),
            "f.yaml: connection erp, field dsn: must be a postgresql://user@host/database URL",
            id="dsn-not-postgresql",
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', 'dsn: "postgresql://app@db/erp?sslmode=require&password=hunter2"'),
            "f.yaml: connection erp, field dsn: "
            "the password must be an ${env:NAME} reference, never written in the file",
            id="dsn-password-in-the-query",
        ),
        pytest.param(
            (
                "    workflow_timeout: 20s\n",
                '    workflow_timeout: 20s\n    response: {headers: {X-Trigger: "{{ trigger.name }}"}}\n',
            ),
            "f.yaml: trigger order, field response.headers.X-Trigger: expression {{ trigger.name }}: "
            "unknown name `trigger`; an expression starts from request, execution",
            id="response-header-unknown-name",
        ),
        pytest.param(
            (
                "    workflow_timeout: 20s\n",
                '    workflow_timeout: 20s\n    response: {headers: {X-Execution: "{{ execution.id }"}}\n',
            ),
            "f.yaml: trigger order, field response.headers.X-Execution: "
            "a `{{` is not closed by `}}`; an expression is written {{ expression }}",
            id="response-header-not-closed",
        ),
        pytest.param(
            ("  crm: {type: http", "  CRM: {type: http"),
            "f.yaml: connection 'CRM': a connection name is lower-case letters, digits, '-' and '_', "
            "at most 63 characters, starting with a letter or a digit",
            id="connection-name",
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
    "change",
    [
        pytest.param(('"{{ request.body.id }}"', '"request.body.id }}"'), id="stray-closing-braces"),
        pytest.param(
            ('json: "{{ steps.payload.output }}"', """body: '{"a": {"b": 1}}'"""), id="json-looking-body"
        ),
        pytest.param(
            ('json: "{{ steps.payload.output }}"', """body: '{"a": {"b": "{{ request.body.x }}"}}'"""),
            id="json-looking-body-around-an-expression",
        ),
        pytest.param(
            (
                "    workflow_timeout: 20s\n",
                """    workflow_timeout: 20s\n    response: {body: '{"ok": {"a": 1}}'}\n""",
            ),
            id="json-looking-response",
        ),
        pytest.param(
            ('base_url: "https://crm.example.com/api"', 'base_url: "http://${env:CRM_HOST}/api"'),
            id="base-url-host-reference",
        ),
        pytest.param(
            (
                'base_url: "https://crm.example.com/api"',
                'base_url: "https://crm:${env:CRM_PW}@crm.example.com/"',
            ),
            id="base-url-password-reference",
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', 'dsn: "postgresql://app@${env:DB_HOST}/erp"'), id="dsn-host-reference"
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', 'dsn: "postgresql://app@db:${env:DB_PORT}/erp"'),
            id="dsn-port-reference",
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', 'dsn: "postgresql://app:${env:DB_PW}@db/erp?password=${env:DB_PW}"'),
            id="dsn-password-references",
        ),
        pytest.param(
            ('dsn: "${env:ERP_DSN}"', 'dsn: "postgresql://app@h1:5432,h2:5432/erp"'), id="dsn-multi-host"
        ),
        pytest.param(
            ('base_url: "https://crm.example.com/api"', 'base_url: "http://[${env:CRM_V6}]:8080/api"'),
            id="base-url-ipv6-host-reference",
        ),
        pytest.param(
            (
                "connection: crm, method: POST, path: /customers",
                'url: "http://example.com:{{ request.body.port }}/"',
            ),
            id="http-url-port-expression",
        ),
        pytest.param(
            (
                "connection: crm, method: POST, path: /customers",
                'url: "http://{{ request.body.hosts[0] }}/x"',
            ),
            id="http-url-host-expression",
        ),
    ],
)
def test_what_is_filled_in_later_and_braces_that_are_text_load(change: tuple[str, str]) -> None:
    old, new = change
    assert old in GOOD
    load_text(GOOD.replace(old, new, 1), source="f.yaml")


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("open('/etc/passwd')", f"unknown function open(); the functions are {FUNCTIONS}"),
        ("__import__('os').environ", f"unknown function __import__(); the functions are {FUNCTIONS}"),
        (
            "env.HOME",
            "unknown name `env`; an expression starts from request, execution, trigger, steps, error",
        ),
        (
            "environ",
            "unknown name `environ`; an expression starts from request, execution, trigger, steps, error",
        ),
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


def test_steps_read_what_ran_before_them_across_branches() -> None:
    text = """
workspace: shop
triggers:
  - name: t
    auth: {type: none}
    mode: request_response
    workflow:
      - id: first
        map: {a: 1}
      - id: pick
        condition:
          if: "{{ steps.first.output.a == `1` }}"
          then:
            - id: inner
              map: {chosen: "{{ steps.pick.output.branch }}", first: "{{ steps.first.output }}"}
            - id: call
              http: {url: "http{{ request.body.s }}://x.example/{{ steps.inner.output.chosen }}"}
          else:
            - id: other
              http: {url: "{{ request.body.url }}", method: POST}
      - id: answer
        respond:
          status: "{{ steps.call.output.status || `500` }}"
          body: {inner: "{{ steps.inner.output }}", other: "{{ steps.other.output }}"}
"""
    [workspace] = load_text(text)
    assert [s.id for s in walk_steps(workspace.triggers[0].workflow)] == [
        "first",
        "pick",
        "inner",
        "call",
        "other",
        "answer",
    ]


class NoConfig:
    async def run(self, value: Any) -> Any:
        return value


class NoRun:
    class Config(msgspec.Struct):
        pass


@pytest.mark.parametrize("plugin", ["NoConfig", "NoRun"])
def test_a_python_step_class_without_config_or_run_is_refused(
    monkeypatch: pytest.MonkeyPatch, plugin: str
) -> None:
    entry = EntryPoint(name="broken", value=f"{__name__}:{plugin}", group=plugins.GROUP)
    monkeypatch.setattr(plugins, "installed", lambda: {"broken": entry})
    text = GOOD.replace('step: csv, config: {delimiter: ";"}', "step: broken")
    with pytest.raises(SpecError) as raised:
        load_text(text, source="f.yaml")
    assert str(raised.value) == (
        f"f.yaml: trigger order, step rows, field python.step: python step 'broken' ({__name__}:{plugin}) "
        "has no `Config` Struct or no `run` method"
    )


def test_a_connection_the_document_does_not_declare_is_left_to_apply() -> None:
    # Another file of the workspace may have declared it: only apply knows (check_connection_uses).
    [workspace] = load_text(GOOD.replace("connection: erp,", "connection: erb,"))
    assert [t.name for t in workspace.triggers] == ["order"]


def _trigger(name: str, workflow: str) -> Trigger:
    [workspace] = load_text(
        f"workspace: shop\ntriggers:\n  - name: {name}\n    auth: {{type: none}}\n{workflow}"
    )
    return workspace.triggers[0]


def _sql(name: str = "stock") -> Trigger:
    return _trigger(name, "    workflow: [{id: q, sql: {connection: erp, query: select 1}}]\n")


def _branch_sql() -> Trigger:
    return _trigger(
        "branchy",
        "    workflow:\n      - id: c\n        condition:\n          if: '{{ request.body.x }}'\n"
        "          then: [{id: q, sql: {connection: erp, query: select 1}}]\n",
    )


_POSTGRES = PostgresConnection(dsn="${env:ERP_DSN}")
_HTTP = HttpConnection(base_url="https://erp.example.com")


def _uses(
    connections: dict[str, Connection],
    triggers: list[Trigger],
    stored: dict[str, Connection],
    stored_triggers: list[Trigger] | None = None,
) -> str | None:
    try:
        check_connection_uses("shop", connections, triggers, stored, stored_triggers or [])
    except SpecError as exc:
        return str(exc)
    return None


def test_a_step_may_name_a_connection_stored_by_another_file_of_the_workspace() -> None:
    assert _uses({}, [_sql()], {"erp": _POSTGRES}) is None
    assert _uses({"erp": _POSTGRES}, [_sql()], {"erp": _HTTP}) is None  # the document's wins


def test_a_step_naming_a_connection_the_workspace_does_not_have_is_refused_at_apply() -> None:
    assert _uses({"crm": _HTTP}, [_branch_sql()], {"ledger": _POSTGRES}) == (
        "workspace shop, trigger branchy, step c, then, step q, field sql.connection: "
        "unknown connection 'erp' (the workspace has: crm, ledger)"
    )
    assert _uses({}, [_sql()], {}) == (
        "workspace shop, trigger stock, step q, field sql.connection: unknown connection 'erp' (the workspace has: none)"
    )


def test_a_stored_connection_of_the_wrong_type_is_refused_at_apply() -> None:
    assert _uses({}, [_sql()], {"erp": _HTTP}) == (
        "workspace shop, trigger stock, step q, field sql.connection: "
        "connection 'erp' is of type http; an sql step needs one of type postgres"
    )


def test_a_connection_keeps_its_type_while_stored_triggers_use_it() -> None:
    stored = [_sql(), _branch_sql(), _sql("other")]
    assert _uses({"erp": _HTTP}, [], {"erp": _POSTGRES}, stored) == (
        "workspace shop, connection erp, field type: cannot change from postgres to http: "
        "triggers branchy, other, stock of the workspace use it in sql steps"
    )
    assert _uses({"erp": _HTTP}, [], {"erp": _POSTGRES}, [_sql()]) == (
        "workspace shop, connection erp, field type: cannot change from postgres to http: "
        "trigger stock of the workspace uses it in an sql step"
    )


def test_a_connection_may_change_type_with_the_triggers_that_use_it() -> None:
    moved = _trigger("stock", "    workflow: [{id: q, http: {connection: erp, path: /stock}}]\n")
    assert _uses({"erp": _HTTP}, [moved], {"erp": _POSTGRES}, [_sql()]) is None
    assert _uses({"erp": _HTTP}, [], {"erp": _POSTGRES}, []) is None
    assert _uses({"erp": _POSTGRES}, [], {"erp": PostgresConnection(dsn="${env:OTHER}")}, [_sql()]) is None


DEFAULTS = """
workspace: shop
connections:
  erp: {{type: postgres, dsn: "${{env:ERP_DSN}}"{pool}}}
triggers:
  - name: t
    auth: {{type: none}}
    workflow:
      - id: call
        http: {{url: "https://example.com/"}}
      - id: rows
        sql: {{connection: erp, query: "select 1"{rows}}}
      - id: parsed
        python: {{step: csv, input: "a,b"}}
"""


def test_step_timeouts_row_limit_and_pool_size_have_the_documented_defaults() -> None:
    # docs/triggers.md: an http or sql step gives up after 10s, a python step after 30s; a sql
    # step returns at most 1000 rows; a postgres connection keeps a pool of 4.
    [workspace] = load_text(DEFAULTS.format(pool="", rows=""))
    call, rows, parsed = workspace.triggers[0].workflow
    assert isinstance(call, HttpStep)
    assert isinstance(rows, SqlStep)
    assert isinstance(parsed, PythonStep)
    assert (call.http.timeout, rows.sql.timeout, parsed.python.timeout) == (10.0, 10.0, 30.0)
    assert rows.sql.max_rows == 1000
    erp = workspace.connections["erp"]
    assert isinstance(erp, PostgresConnection)
    assert erp.pool_size == 4


@pytest.mark.parametrize(("pool", "rows"), [(1, 1), (20, 100_000)])
def test_row_limit_and_pool_size_take_their_documented_range(pool: int, rows: int) -> None:
    [workspace] = load_text(DEFAULTS.format(pool=f", pool_size: {pool}", rows=f", max_rows: {rows}"))
    assert workspace.connections["erp"].pool_size == pool  # type: ignore[union-attr]
    assert workspace.triggers[0].workflow[1].sql.max_rows == rows  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("pool", "rows", "field"),
    [(0, 1000, "pool_size"), (21, 1000, "pool_size"), (4, 0, "max_rows"), (4, 100_001, "max_rows")],
)
def test_row_limit_and_pool_size_outside_their_range_are_refused(pool: int, rows: int, field: str) -> None:
    with pytest.raises(SpecError, match=field):
        load_text(DEFAULTS.format(pool=f", pool_size: {pool}", rows=f", max_rows: {rows}"))
