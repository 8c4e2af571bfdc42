"""HTTP Basic on a trigger: the username and password checked against the scrypt hash, every
refusal with its reason and the challenge, and verified pairs cached (never the password)."""

from __future__ import annotations

import base64

import pytest

from ingress.auth import basic
from ingress.auth.basic import BasicCredentials
from ingress.errors import Unauthorized
from shared.spec.secrets import hash_password

HASH = hash_password("correct horse")
CHALLENGE = 'Basic realm="hooks", charset="UTF-8"'


def basic_header(credentials: bytes | str) -> dict[str, str]:
    raw = credentials.encode() if isinstance(credentials, str) else credentials
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


async def refusal(auth: BasicCredentials, headers: dict[str, str]) -> str:
    with pytest.raises(Unauthorized) as refused:
        await auth.before_body(headers)
    assert refused.value.challenge == CHALLENGE
    assert refused.value.hint is not None
    assert refused.value.hint["reason"] == refused.value.reason
    return refused.value.reason


async def test_the_right_username_and_password_open_the_trigger_as_that_user() -> None:
    auth = BasicCredentials("partner", HASH, "hooks")
    assert auth.credential_headers == frozenset({"authorization"})
    assert await auth.before_body(basic_header("partner:correct horse")) == "partner"
    assert (
        await auth.before_body(
            {"authorization": "basic " + basic_header("partner:correct horse")["authorization"][6:]}
        )
        == "partner"
    )
    assert await auth.before_body(basic_header("partner:correct horse")) == "partner"  # from the cache
    assert auth.after_body(b"", {}, 0.0) is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing-credentials"),
        ({"authorization": "Basic"}, "missing-credentials"),
        ({"authorization": "Bearer cGFydG5lcjpjb3JyZWN0IGhvcnNl"}, "missing-credentials"),
        ({"authorization": "Basic %%%"}, "malformed-credentials"),
        (basic_header(b"partner:\xff"), "malformed-credentials"),
        (basic_header("partner:wrong"), "invalid-credentials"),
        (basic_header("other:correct horse"), "invalid-credentials"),
        (basic_header("partner"), "invalid-credentials"),
        (basic_header("partner:correct horse "), "invalid-credentials"),
        (basic_header("Partner:correct horse"), "invalid-credentials"),
    ],
)
async def test_every_other_call_is_refused_with_its_reason(headers: dict[str, str], reason: str) -> None:
    assert await refusal(BasicCredentials("partner", HASH, "hooks"), headers) == reason


async def test_a_password_with_a_colon_is_split_at_the_first_one() -> None:
    auth = BasicCredentials("partner", hash_password("a:b"), "hooks")
    assert await auth.before_body(basic_header("partner:a:b")) == "partner"


async def test_a_verified_pair_is_cached_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = basic.verify_password

    def counted(password: str, stored: str) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(basic, "verify_password", counted)
    auth = BasicCredentials("partner", HASH, "hooks")
    for _ in range(3):
        await auth.before_body(basic_header("partner:correct horse"))
    assert calls == ["correct horse"]  # hashed once, then from the cache
    await refusal(auth, basic_header("partner:wrong"))
    assert calls == ["correct horse", "wrong"]  # a refusal is never cached
    await refusal(auth, basic_header("partner:wrong"))
    assert len(calls) == 3
    monkeypatch.setattr(basic, "CACHE_SECONDS", -1.0)  # what an expired entry looks like
    fresh = BasicCredentials("partner", HASH, "hooks")
    for _ in range(2):
        await fresh.before_body(basic_header("partner:correct horse"))
    assert len(calls) == 5  # hashed again each time
