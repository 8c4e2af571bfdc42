"""What `triggers try` sends: the options as given, or the last sample's request again."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from ingress.errors import BadRequest
from ingress.trials import TryCall, prepare
from shared.cli.commands.trigger_loop import try_request
from shared.db.triggers import Sample
from shared.errors import HooklineError, SpecError
from shared.spec.loader import load_text
from shared.spec.model import BasicAuth
from shared.spec.secrets import Sources, seal

SAMPLE = Sample(
    "e1",
    datetime(2026, 1, 1, tzinfo=UTC),
    {
        "method": "PUT",
        "query": {"item": 5, "filter": {"status": "paid"}, "ids": [1, 2], "flag": True},
        "headers": {"x-request-id": "r-1"},
        "content_type": "application/json",
        "body_kind": "json",
        "body": {"n": 1},
    },
)


def test_nothing_given_sends_the_sample_again() -> None:
    sent = prepare(TryCall(), SAMPLE)
    assert (sent.method, sent.body, sent.from_sample) == ("PUT", b'{"n":1}', True)
    assert sent.query == "item=5&filter[status]=paid&ids=1&ids=2&flag=true"
    assert sent.headers == {"x-request-id": "r-1", "content-type": "application/json"}


def test_given_parts_replace_the_sample_whole() -> None:
    sent = prepare(TryCall(body='{"m": 2}', query={"a": ["1", "2"]}), SAMPLE)
    assert (sent.method, sent.body, sent.from_sample) == ("POST", b'{"m": 2}', False)
    assert sent.headers == {"content-type": "application/json"}
    assert sent.query == "a=1&a=2"
    assert prepare(TryCall(body="plain"), None).headers == {"content-type": "text/plain; charset=utf-8"}
    with pytest.raises(BadRequest):
        prepare(TryCall(method="GET /x"), None)


def _ns(**given: object) -> argparse.Namespace:
    fields: dict[str, object] = {
        "method": None,
        "data": None,
        "query": [],
        "header": [],
        "password_env": None,
    }
    return argparse.Namespace(**{**fields, **given})


def test_the_cli_options_become_the_call() -> None:
    call = try_request(_ns(data="{}", query=["a=1", "a=2", "b=x=y"], header=["X-Trace: t 1"]), {})
    assert call == {"body": "{}", "query": {"a": ["1", "2"], "b": "x=y"}, "headers": {"X-Trace": "t 1"}}
    assert try_request(_ns(password_env="PW"), {"PW": "s3cret"}) == {"password": "s3cret"}
    for bad, message in (
        (_ns(query=["nope"]), "-q 'nope': write NAME=VALUE"),
        (_ns(header=["no colon"]), "-H 'no colon': write 'Name: value'"),
        (_ns(password_env="UNSET_PW"), "--password-env UNSET_PW: that variable is not set"),
    ):
        with pytest.raises(HooklineError) as caught:
            try_request(bad, {})
        assert str(caught.value) == message


def test_a_basic_password_reference_is_kept_beside_its_hash_a_literal_is_not() -> None:
    text = "workspace: ws\ntriggers:\n  - name: t\n    auth: {type: basic, username: u, password: %s}\n"
    [referenced] = load_text(text % '"${env:PW}"')
    sealed = seal(referenced.triggers[0], None, Sources(environ={"PW": "s3cret"}))
    assert isinstance(sealed.auth, BasicAuth)
    assert (sealed.auth.password, sealed.auth.password_ref) == (None, "${env:PW}")
    [literal] = load_text(text % "written-out")
    sealed = seal(literal.triggers[0], None)
    assert isinstance(sealed.auth, BasicAuth)
    assert (sealed.auth.password, sealed.auth.password_ref) == (None, None)
    with pytest.raises(SpecError) as caught:
        load_text(text.replace("password: %s", 'password: x, password_ref: "${env:OTHER}"'), source="f.yaml")
    assert str(caught.value) == (
        "f.yaml: trigger t, field auth.password_ref: cannot be given; hookline keeps it from `password`"
    )
