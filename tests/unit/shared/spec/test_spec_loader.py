"""The trigger file: valid documents load, every mistake is named by file, trigger, step, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import SpecError
from shared.spec.loader import load_file, load_text
from shared.spec.model import ApiKeyAuth, HmacAuth, OrderingKey
from shared.spec.secrets import MissingSecret, resolve
from shared.spec.steps import MapStep, RespondStep

GOOD = """
workspace: demo
triggers:
  - name: echo
    auth: {type: api_key}
    mode: request_response
    timeout: 10s
    query:
      customerid: {type: integer, required: true}
    ordered: {key: "request.body.customer_id", partitions: 4}
    workflow:
      - id: payload
        map: {id: "{{ request.query.customerid }}"}
      - respond: {status: 200, body: "{{ steps.payload.output }}"}
"""


def test_a_valid_file_loads_with_defaults_filled_in() -> None:
    [workspace] = load_text(GOOD)
    [trigger] = workspace.triggers
    assert trigger.auth == ApiKeyAuth()
    assert trigger.timeout == 10.0
    assert trigger.methods == ["POST"]
    assert trigger.ordered == OrderingKey(key="request.body.customer_id", partitions=4)
    assert trigger.body.max_bytes == 1_048_576
    assert isinstance(trigger.workflow[0], MapStep)
    assert isinstance(trigger.workflow[1], RespondStep)
    assert trigger.workflow[1].id == "respond_2"


def test_several_documents_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(GOOD + "\n---\n" + GOOD.replace("workspace: demo", "workspace: other"))
    assert [w.workspace for w in load_file(path)] == ["demo", "other"]


def test_json_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('{"workspace": "j", "triggers": [{"name": "t", "auth": {"type": "none"}}]}')
    [workspace] = load_file(path)
    assert workspace.triggers[0].name == "t"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("status: 200", "status: [1]"),
            "f.yaml: trigger echo, step respond_2, field respond.status: Expected `int | str`, got `array`",
        ),
        (
            ("auth: {type: api_key}", "auth: {type: apikey}"),
            "f.yaml: trigger echo, field auth.type: Invalid value 'apikey'",
        ),
        (
            ("timeout: 10s", "timeout: 10x"),
            "f.yaml: trigger echo, field timeout: invalid duration '10x': use a number of seconds or 500ms, 10s, 5m, 24h",
        ),
        (
            ("respond:", "respnd:"),
            "f.yaml: trigger echo, step 2: unknown step kind (keys: respnd); "
            "expected one of map, respond, http, sql, condition, python",
        ),
        (("mode:", "mdoe:"), "f.yaml: trigger echo: Object contains unknown field `mdoe`"),
        (
            ("name: echo", "name: Echo!"),
            "f.yaml: trigger Echo!, field name: Expected `str` matching regex '^[a-z0-9][a-z0-9_-]{0,62}$'",
        ),
        (
            ("{type: integer, required: true}", "{type: integer, required: true, default: 3}"),
            "f.yaml: trigger echo: query parameter 'customerid': a required parameter cannot have a default",
        ),
        (
            ("- respond:", "- id: payload\n        respond:"),
            "f.yaml: trigger echo: duplicate step id 'payload'",
        ),
        (("    auth: {type: api_key}\n", ""), "f.yaml: trigger echo: Object missing required field `auth`"),
        (
            ("partitions: 4", "partitions: 0"),
            "f.yaml: trigger echo, field ordered.partitions: Expected `int` >= 1",
        ),
        (
            (
                "auth: {type: api_key}",
                'auth: {type: basic, username: u, password: "${env:HOOKLINE_ADMIN_TOKEN}"}',
            ),
            "f.yaml: trigger echo, field auth.password: "
            "hookline's own settings cannot be referenced from a trigger file (${env:HOOKLINE_ADMIN_TOKEN})",
        ),
        (
            (
                "auth: {type: api_key}",
                'auth: {type: basic, username: u, password: "pw-${env:HOOKLINE_AMQP_URL}"}',
            ),
            "f.yaml: trigger echo, field auth.password: "
            "hookline's own settings cannot be referenced from a trigger file (${env:HOOKLINE_AMQP_URL})",
        ),
        (
            (
                "auth: {type: api_key}",
                'auth: {type: hmac, preset: github, secret: "${env:HOOKLINE_DATABASE_URL}"}',
            ),
            "f.yaml: trigger echo, field auth.secret: "
            "hookline's own settings cannot be referenced from a trigger file (${env:HOOKLINE_DATABASE_URL})",
        ),
        (
            (
                "auth: {type: api_key}",
                'auth: {type: hmac, preset: github, secret: ["${env:NEW}", "${env:HOOKLINE_ADMIN_TOKEN}"]}',
            ),
            "f.yaml: trigger echo, field auth.secret[1]: "
            "hookline's own settings cannot be referenced from a trigger file (${env:HOOKLINE_ADMIN_TOKEN})",
        ),
        *(
            (
                ("auth: {type: api_key}", f"auth: {{type: hmac, preset: github, secret: {secret}}}"),
                "f.yaml: trigger echo, field auth: an hmac secret must be a reference to a secret of the "
                'workspace or an environment variable, such as "${secret:GITHUB_SECRET}", so that it is '
                "never stored in plain text",
            )
            for secret in [
                "s3cret",
                '["${env:NEW}", s3cret]',
                '"x${env:GH}"',
                '"${env:GH}x"',
                '"${file:/etc/x}"',
            ]
        ),
    ],
)
def test_each_mistake_is_reported_with_its_place(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(SpecError) as raised:
        load_text(GOOD.replace(old, new, 1), source="f.yaml")
    assert str(raised.value) == message


def test_broken_yaml_names_the_file() -> None:
    with pytest.raises(SpecError, match=r"^f.yaml: not valid YAML or JSON: "):
        load_text("workspace: [unclosed", source="f.yaml")


def test_deeply_nested_input_is_a_spec_error_not_a_crash() -> None:
    with pytest.raises(SpecError):
        load_text("[" * 5000, source="deep.yaml")


def test_a_document_that_is_not_a_mapping() -> None:
    with pytest.raises(SpecError, match="a document must be a mapping"):
        load_text("- just\n- a list\n", source="f.yaml")


def test_hooklines_own_settings_are_not_resolved_for_a_trigger_file_whether_set_or_not() -> None:
    environ = {"HOOKLINE_ADMIN_TOKEN": "adm-1f2e", "PARTNER": "pw"}
    refused = "hookline's own settings cannot be referenced from a trigger file"
    for name in (
        "HOOKLINE_ADMIN_TOKEN",
        "HOOKLINE_DATABASE_URL",
        "hookline_amqp_url",
        "HOOKLINE_METRICS_TOKEN",
    ):
        with pytest.raises(MissingSecret) as raised:
            resolve(f"${{env:PARTNER}}:${{env:{name}}}", environ)
        assert str(raised.value) == f"{refused} (${{env:{name}}})"
    with pytest.raises(MissingSecret) as raised:
        resolve("${env:UNSET}", environ)
    assert str(raised.value) == "environment variable UNSET is not set"
    assert resolve("${env:PARTNER}", environ) == "pw"


def test_other_hookline_names_are_the_files_to_use() -> None:
    # Only HOOKLINE_<setting> is reserved (every field of Settings), not the whole prefix.
    environ = {"HOOKLINE_GITHUB_SECRET": "gh-5e1"}
    assert resolve("${env:HOOKLINE_GITHUB_SECRET}", environ) == "gh-5e1"
    with pytest.raises(MissingSecret) as raised:
        resolve("${env:HOOKLINE_PARTNER_KEY}", environ)
    assert str(raised.value) == "environment variable HOOKLINE_PARTNER_KEY is not set"
    hmac = 'auth: {type: hmac, preset: github, secret: "${env:HOOKLINE_GITHUB_SECRET}"}'
    [workspace] = load_text(GOOD.replace("auth: {type: api_key}", hmac))
    auth = workspace.triggers[0].auth
    assert isinstance(auth, HmacAuth)
    assert auth.secret == "${env:HOOKLINE_GITHUB_SECRET}"


FLOW = """
workspace: w
triggers:
  - name: t
    auth: {type: none}
"""


def test_flow_control_settings_load() -> None:
    text = FLOW + (
        "    max_queued: 50\n"
        "    concurrency: {key: request.body.customer, limit: 2}\n"
        "    throttle: {rate: 20, per: 1s, burst: 5}\n"
    )
    (trigger,) = load_text(text)[0].triggers
    assert trigger.max_queued == 50
    assert trigger.concurrency is not None
    assert trigger.throttle is not None
    assert (trigger.throttle.rate, trigger.throttle.per, trigger.throttle.burst) == (20, 1.0, 5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    concurrency: 0\n", "trigger t, field concurrency: Expected `int` >= 1"),
        (
            "    concurrency: {key: request.body.c}\n",
            "trigger t, field concurrency: Object missing required field `limit`",
        ),
        ("    concurrency: {key: 'foo(', limit: 1}\n", "trigger t, field concurrency: expression {{ foo( }}"),
        ("    throttle: {rate: 0}\n", "trigger t, field throttle.rate: Expected `int` >= 1"),
        ("    throttle: {rate: 5, per: 0s}\n", "trigger t, field throttle: `per` must be more than 0"),
        ("    max_queued: 0\n", "trigger t, field max_queued: Expected `int` >= 1"),
        (
            "    ordered: true\n    throttle: {rate: 5}\n",
            "trigger t: `throttle` applies to unordered triggers; an ordered trigger runs one at a time per lane already",
        ),
    ],
)
def test_flow_control_mistakes_are_reported_with_their_place(extra: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        load_text(FLOW + extra)
    assert message in str(raised.value)
