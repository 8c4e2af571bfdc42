"""A trigger's API keys: where a key is read from, how it is checked, and how it scopes the
caller's idempotency keys, without a server."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest

from ingress.auth.api_key import CHALLENGE, ApiKeys, presented_key
from ingress.errors import Unauthorized
from ingress.hooks import caller_of, idempotency_key
from ingress.idempotency import fingerprint
from shared.ids import key_digest


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"x-api-key": "k1"}, "k1"),
        ({"x-api-key": " k1 "}, "k1"),
        ({"authorization": "Bearer k1"}, "k1"),
        ({"authorization": "bearer  k1 "}, "k1"),
        ({"x-api-key": "k1", "authorization": "Bearer k2"}, "k1"),
    ],
)
def test_a_key_is_read_from_x_api_key_or_a_bearer_authorization(headers: dict[str, str], key: str) -> None:
    assert presented_key(headers) == key


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": ""},
        {"authorization": "Basic azE6cGFzcw=="},
        {"authorization": "Token k1"},
        {"authorization": "k1"},
        {"authorization": "Bearer "},
        {"authorization": "Bearer"},
    ],
)
def test_no_other_header_or_scheme_carries_a_key(headers: dict[str, str]) -> None:
    assert presented_key(headers) is None


async def test_only_a_live_key_of_the_trigger_opens_it() -> None:
    keys = ApiKeys(frozenset({key_digest("k1")}))
    assert await keys.before_body({"x-api-key": "k1"}) == key_digest("k1").hex()
    for headers, reason in [
        ({}, "missing-key"),
        ({"authorization": "Basic k1"}, "missing-key"),
        ({"x-api-key": "k2"}, "invalid-key"),
        ({"authorization": "Bearer k1x"}, "invalid-key"),
    ]:
        with pytest.raises(Unauthorized) as refused:
            await keys.before_body(headers)
        assert (refused.value.reason, refused.value.challenge) == (reason, CHALLENGE)


def test_an_idempotency_key_is_scoped_to_the_callers_key() -> None:
    entry = SimpleNamespace(idempotency_headers=("idempotency-key", "webhook-id"))
    headers = {"idempotency-key": "order-7"}
    first, second = "a" * 64, "b" * 64
    assert idempotency_key(entry, headers, first) == f"{'a' * 32}:order-7"  # type: ignore[arg-type]
    assert idempotency_key(entry, headers, first) != idempotency_key(entry, headers, second)  # type: ignore[arg-type]
    assert idempotency_key(entry, headers) == "order-7"  # type: ignore[arg-type]
    assert caller_of(first) == "a" * 32
    assert caller_of(None) is None


def test_an_idempotency_key_is_read_from_the_first_header_present_and_cut_at_200() -> None:
    entry = SimpleNamespace(idempotency_headers=("idempotency-key", "webhook-id"))
    assert idempotency_key(entry, {"webhook-id": "msg_1"}) == "msg_1"  # type: ignore[arg-type]
    assert idempotency_key(entry, {"idempotency-key": "a", "webhook-id": "b"}) == "a"  # type: ignore[arg-type]
    assert idempotency_key(entry, {"idempotency-key": "", "webhook-id": "b"}) == "b"  # type: ignore[arg-type]
    assert idempotency_key(entry, {"idempotency-key": "x" * 300}) == "x" * 200  # type: ignore[arg-type]
    assert idempotency_key(entry, {}) is None  # type: ignore[arg-type]


def test_a_calls_fingerprint_is_sha256_of_its_method_and_length_prefixed_query_and_body() -> None:
    expected = hashlib.sha256(b"POST" + (3).to_bytes(8, "big") + b"a=1" + (2).to_bytes(8, "big") + b"{}")
    assert fingerprint("POST", b"a=1", b"{}") == expected.digest()
    # Parts cannot run together: moving a byte from the query to the body is another call.
    assert fingerprint("POST", b"a=1", b"{}") != fingerprint("POST", b"a=", b"1{}")
    assert fingerprint("POST", b"", b"") != fingerprint("PUT", b"", b"")
