"""An `hmac` trigger at the ingress: which headers are credentials, the header checked before
the body, the signature after it, and the hint a refused sender gets (never the secret)."""

from __future__ import annotations

import pytest

from ingress.auth.hmac import HmacSignature, signature_hint
from ingress.errors import Unauthorized
from shared.signatures.presets import PRESETS, scheme_from_spec
from shared.signatures.verify import SignatureInvalid, sign
from shared.spec.model import HmacAuth
from shared.spec.types import Duration

GITHUB = PRESETS["github"]
STRIPE = PRESETS["stripe"]
BODY = b'{"id": 1}'
NOW = 1_700_000_000.0


def test_the_signature_header_and_authorization_are_credentials() -> None:
    # They never reach the workflow (ingress/registry.py drops credential headers).
    assert HmacSignature(GITHUB, [b"k"]).credential_headers == frozenset(
        {"x-hub-signature-256", "authorization"}
    )


async def test_a_call_without_the_signature_header_is_refused_before_its_body_is_read() -> None:
    auth = HmacSignature(GITHUB, [b"k"])
    assert await auth.before_body({"x-hub-signature-256": "sha256=00"}) is None
    with pytest.raises(Unauthorized) as refused:
        await auth.before_body({"authorization": "Bearer k"})
    assert refused.value.reason == "missing-header"
    assert refused.value.hint == {
        "reason": "missing-header",
        "message": "header X-Hub-Signature-256 is missing or empty",
        "expected": GITHUB.describe(),
        "header": "X-Hub-Signature-256",
    }


def test_a_signature_is_checked_after_the_body_with_every_secret() -> None:
    auth = HmacSignature(GITHUB, [b"old", b"new"])
    headers = {k.lower(): v for k, v in sign(GITHUB, b"new", BODY, NOW).items()}
    auth.after_body(BODY, headers, NOW)
    with pytest.raises(Unauthorized) as refused:
        auth.after_body(BODY + b" ", headers, NOW)
    assert refused.value.reason == "mismatch"
    assert refused.value.hint is not None
    assert (
        refused.value.hint["message"]
        == "the signature does not match: another secret, or a body changed after signing"
    )
    assert "header" not in refused.value.hint


def test_a_hint_names_the_schemes_header_when_the_refusal_names_none() -> None:
    hint = signature_hint(STRIPE, SignatureInvalid("timestamp-missing"))
    assert hint == {
        "reason": "timestamp-missing",
        "message": "no timestamp in Stripe-Signature",
        "expected": STRIPE.describe(),
    }


@pytest.mark.parametrize(
    ("skew", "message"),
    [
        (400, "the timestamp is 400 s old, more than the 300 s allowed (a replay or a slow clock)"),
        (-400, "the timestamp is 400 s ahead of our clock, more than the 300 s allowed"),
    ],
)
def test_a_hint_tells_a_stale_or_future_sender_its_skew(skew: int, message: str) -> None:
    reason = "timestamp-stale" if skew > 0 else "timestamp-future"
    hint = signature_hint(STRIPE, SignatureInvalid(reason, header="Stripe-Signature", skew=skew))
    assert (hint["message"], hint["skew_seconds"], hint["header"]) == (message, skew, "Stripe-Signature")


def test_a_scheme_from_fields_keeps_the_specs_tolerance() -> None:
    spec = HmacAuth(secret="${env:S}", header="X-Sig", timestamp_header="X-Ts", tolerance=Duration(60))
    assert scheme_from_spec(spec).tolerance == 60.0
    assert (
        scheme_from_spec(HmacAuth(secret="${env:S}", preset="slack", tolerance=Duration(30))).tolerance
        == 30.0
    )
