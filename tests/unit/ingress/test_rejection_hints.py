"""What a refused sender is told (in the operator's list): the header, the scheme, the skew;
never the secret, the presented key or the signature that was expected."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest

from ingress.auth.api_key import ApiKeys
from ingress.auth.hmac import HmacSignature
from ingress.errors import Unauthorized
from shared.signatures.presets import PRESETS

SECRET = b"It's a Secret to Everybody"
BODY = b'{"order": 1}'
NOW = 1_700_000_000.0


def _refusal(headers: dict[str, str], preset: str = "slack") -> dict[str, object]:
    verifier = HmacSignature(PRESETS[preset], [SECRET])

    def call() -> None:
        asyncio.run(verifier.before_body(headers))
        verifier.after_body(BODY, headers, NOW)

    with pytest.raises(Unauthorized) as caught:
        call()
    assert caught.value.hint is not None
    return caught.value.hint


def _slack(timestamp: int, body: bytes = BODY) -> dict[str, str]:
    mac = hmac.new(SECRET, f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"x-slack-signature": f"v0={mac}", "x-slack-request-timestamp": str(timestamp)}


SLACK = 'X-Slack-Signature: v0=<hex hmac-sha256 of "v0:{timestamp}:{body}">, timestamp in X-Slack-Request-Timestamp (within 300 s)'


def test_a_stale_timestamp_says_how_old_it_is() -> None:
    assert _refusal(_slack(int(NOW) - 900)) == {
        "reason": "timestamp-stale",
        "message": "the timestamp is 900 s old, more than the 300 s allowed (a replay or a slow clock)",
        "expected": SLACK,
        "skew_seconds": 900,
    }


def test_a_timestamp_from_the_future_says_how_far_ahead() -> None:
    hint = _refusal(_slack(int(NOW) + 400))
    assert (hint["reason"], hint["skew_seconds"]) == ("timestamp-future", -400)
    assert hint["message"] == "the timestamp is 400 s ahead of our clock, more than the 300 s allowed"


def test_a_missing_header_is_named() -> None:
    assert _refusal({}) == {
        "reason": "missing-header",
        "message": "header X-Slack-Signature is missing or empty",
        "expected": SLACK,
        "header": "X-Slack-Signature",
    }
    missing_timestamp = _slack(int(NOW))
    del missing_timestamp["x-slack-request-timestamp"]
    assert _refusal(missing_timestamp)["header"] == "X-Slack-Request-Timestamp"


def test_a_mismatch_names_no_signature_and_no_secret() -> None:
    sent = _slack(int(NOW), body=b"other")
    hint = _refusal(sent)
    assert hint["reason"] == "mismatch"
    expected = hmac.new(SECRET, f"v0:{int(NOW)}:".encode() + BODY, hashlib.sha256).hexdigest()
    text = json.dumps(hint)
    for secret in (expected, sent["x-slack-signature"][3:], SECRET.decode()):
        assert secret not in text


def test_an_unknown_key_is_told_from_a_missing_one_and_never_repeated() -> None:
    keys = ApiKeys(frozenset())
    hints = []
    for headers in ({"x-api-key": "hk_not-a-key-anyone-has"}, {}):
        with pytest.raises(Unauthorized) as caught:
            asyncio.run(keys.before_body(headers))
        hints.append(caught.value.hint)
    assert [h["reason"] for h in hints if h] == ["unknown-key", "missing-key"]
    assert "hk_not-a-key" not in json.dumps(hints)
