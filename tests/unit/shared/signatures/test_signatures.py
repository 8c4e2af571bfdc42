"""HMAC signatures: each preset against its sender's documented computation and published
examples, one test per refusal reason, key rotation, and sign()/verify() round trips."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import get_args, get_type_hints

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import HooklineError
from shared.signatures.presets import PRESETS, scheme_from_spec
from shared.signatures.scheme import SignatureScheme, compile_template
from shared.signatures.verify import SignatureInvalid, secret_bytes, sign, verify
from shared.spec.model import HmacAuth
from shared.spec.secrets import resolve
from shared.spec.types import Duration

GITHUB = PRESETS["github"]
SHOPIFY = PRESETS["shopify"]
SLACK = PRESETS["slack"]
STRIPE = PRESETS["stripe"]
STANDARD = PRESETS["standard-webhooks"]

NOW = 1_700_000_000.0
BODY = b'{"id": "evt_1", "amount": 1200}'

# Standard Webhooks' example (spec/standard-webhooks.md, "Signature scheme").
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TIMESTAMP = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# GitHub's example ("Validating webhook deliveries", "Testing the webhook payload validation").
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# Slack's example ("Verifying requests from Slack", "Step-by-step walk-through").
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = 1531420618
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com"
    b"%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def lower(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as verify() receives them: lower-case names."""
    return {name.lower(): value for name, value in headers.items()}


def refusal(
    scheme: SignatureScheme,
    secret: bytes,
    body: bytes,
    headers: Mapping[str, str],
    now: float = NOW,
) -> str:
    """The reason verify() refuses; its message must never tell which part was wrong."""
    with pytest.raises(SignatureInvalid) as caught:
        verify(scheme, [secret], body, lower(headers), now)
    assert str(caught.value) == "invalid signature"
    return caught.value.reason


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def signed(scheme: SignatureScheme, secret: bytes, body: bytes = BODY) -> dict[str, str]:
    return lower(sign(scheme, secret, body, NOW, msg_id="msg_1"))


# --- each preset as its sender documents it -------------------------------------------


def test_github_published_example_verifies() -> None:
    computed = hmac.new(GITHUB_SECRET.encode(), GITHUB_BODY, hashlib.sha256).hexdigest()
    assert f"sha256={computed}" == GITHUB_SIGNATURE
    headers = {"x-hub-signature-256": GITHUB_SIGNATURE}

    verify(GITHUB, [secret_bytes(GITHUB, GITHUB_SECRET)], GITHUB_BODY, headers, NOW)
    assert sign(GITHUB, GITHUB_SECRET.encode(), GITHUB_BODY, NOW) == {"X-Hub-Signature-256": GITHUB_SIGNATURE}


def test_standard_webhooks_published_example_verifies() -> None:
    key = base64.b64decode(SW_SECRET.removeprefix("whsec_"))
    content = f"{SW_MSG_ID}.{SW_TIMESTAMP}.".encode() + SW_BODY
    computed = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    assert f"v1,{computed}" == SW_SIGNATURE
    headers = {
        "webhook-id": SW_MSG_ID,
        "webhook-timestamp": str(SW_TIMESTAMP),
        "webhook-signature": SW_SIGNATURE,
    }

    verify(STANDARD, [secret_bytes(STANDARD, SW_SECRET)], SW_BODY, headers, SW_TIMESTAMP + 10)
    assert sign(STANDARD, key, SW_BODY, SW_TIMESTAMP, msg_id=SW_MSG_ID) == headers


def test_slack_published_example_verifies() -> None:
    content = f"v0:{SLACK_TIMESTAMP}:".encode() + SLACK_BODY
    computed = hmac.new(SLACK_SECRET.encode(), content, hashlib.sha256).hexdigest()
    assert f"v0={computed}" == SLACK_SIGNATURE
    headers = {
        "X-Slack-Request-Timestamp": str(SLACK_TIMESTAMP),
        "X-Slack-Signature": SLACK_SIGNATURE,
    }

    key = secret_bytes(SLACK, SLACK_SECRET)
    verify(SLACK, [key], SLACK_BODY, lower(headers), SLACK_TIMESTAMP + 60)
    assert sign(SLACK, key, SLACK_BODY, SLACK_TIMESTAMP) == headers


def test_stripe_signature_computed_as_stripe_documents_verifies() -> None:
    # Stripe publishes no secret with its example header; this follows "Verify manually":
    # HMAC-SHA256, key = the whole `whsec_...` string, content = "{t}.{payload}", hex.
    secret = "whsec_5a7d9c0e1f2b3a4c5d6e7f8091a2b3c4"
    t = int(NOW)
    v1 = hmac.new(secret.encode(), f"{t}.".encode() + BODY, hashlib.sha256).hexdigest()
    v0 = "6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
    headers = {"stripe-signature": f"t={t},v1={v1},v0={v0}"}

    verify(STRIPE, [secret_bytes(STRIPE, secret)], BODY, headers, NOW + 5)
    assert sign(STRIPE, secret.encode(), BODY, NOW) == {"Stripe-Signature": f"t={t},v1={v1}"}


def test_shopify_signature_computed_as_shopify_documents_verifies() -> None:
    # Shopify: base64 of HMAC-SHA256 over the raw body, keyed with the app's client secret.
    secret = "shpss_0123456789abcdef0123456789abcdef"
    digest = base64.b64encode(hmac.new(secret.encode(), BODY, hashlib.sha256).digest()).decode()
    headers = {"x-shopify-hmac-sha256": digest}

    verify(SHOPIFY, [secret_bytes(SHOPIFY, secret)], BODY, headers, NOW)
    assert sign(SHOPIFY, secret.encode(), BODY, NOW) == {"X-Shopify-Hmac-Sha256": digest}


def test_every_preset_the_trigger_file_allows_has_a_scheme() -> None:
    preset_type = get_type_hints(HmacAuth)["preset"]
    allowed = {name for literal in get_args(preset_type) for name in get_args(literal)}
    assert allowed == set(PRESETS)


# --- one test per refusal reason ------------------------------------------------------


def test_missing_signature_header_is_refused_as_missing_header() -> None:
    assert refusal(GITHUB, b"k", BODY, {}) == "missing-header"


def test_empty_signature_header_is_refused_as_missing_header() -> None:
    assert refusal(GITHUB, b"k", BODY, {"X-Hub-Signature-256": "  "}) == "missing-header"


def test_missing_message_id_is_refused_as_missing_header() -> None:
    headers = signed(STANDARD, b"k")
    del headers["webhook-id"]
    assert refusal(STANDARD, b"k", BODY, headers) == "missing-header"


def test_signature_that_is_not_hex_is_refused_as_bad_encoding() -> None:
    headers = {"X-Hub-Signature-256": "sha256=" + "zz" * 32}
    assert refusal(GITHUB, b"k", BODY, headers) == "bad-encoding"


def test_signature_that_is_not_base64_is_refused_as_bad_encoding() -> None:
    headers = {"X-Shopify-Hmac-Sha256": "not base64 at all!"}
    assert refusal(SHOPIFY, b"k", BODY, headers) == "bad-encoding"


def test_signature_without_its_prefix_is_refused_as_bad_encoding() -> None:
    headers = signed(GITHUB, b"k")
    headers["x-hub-signature-256"] = headers["x-hub-signature-256"].removeprefix("sha256=")
    assert refusal(GITHUB, b"k", BODY, headers) == "bad-encoding"


def test_digest_of_another_algorithm_is_refused_as_bad_encoding() -> None:
    sha1 = hmac.new(b"k", BODY, hashlib.sha1).hexdigest()
    assert refusal(GITHUB, b"k", BODY, {"X-Hub-Signature-256": f"sha256={sha1}"}) == ("bad-encoding")


def test_header_with_only_other_signature_versions_is_refused_as_bad_encoding() -> None:
    v0 = hmac.new(b"k", f"{int(NOW)}.".encode() + BODY, hashlib.sha256).hexdigest()
    headers = {"Stripe-Signature": f"t={int(NOW)},v0={v0}"}
    assert refusal(STRIPE, b"k", BODY, headers) == "bad-encoding"


@pytest.mark.parametrize(
    "timestamp", ["1.7e9", "-1700000000", "1700000000.5", "\u0661\u0667\u0660\u0660", "9" * 13]
)
def test_timestamp_that_is_not_decimal_seconds_is_refused_as_bad_encoding(timestamp: str) -> None:
    headers = signed(SLACK, b"k") | {"x-slack-request-timestamp": timestamp}
    assert refusal(SLACK, b"k", BODY, headers) == "bad-encoding"


def test_two_timestamps_in_one_header_are_refused_as_bad_encoding() -> None:
    headers = signed(STRIPE, b"k")
    headers["stripe-signature"] += f",t={int(NOW)}"
    assert refusal(STRIPE, b"k", BODY, headers) == "bad-encoding"


def test_tampered_body_is_refused_as_mismatch() -> None:
    headers = signed(GITHUB, b"k")
    assert refusal(GITHUB, b"k", BODY.replace(b"1200", b"9900"), headers) == "mismatch"


def test_wrong_secret_is_refused_as_mismatch() -> None:
    headers = signed(GITHUB, b"k")
    assert refusal(GITHUB, b"another key", BODY, headers) == "mismatch"


@pytest.mark.parametrize("position", range(64))
def test_a_signature_with_any_one_digit_changed_is_refused_as_mismatch(position: int) -> None:
    digits = GITHUB_SIGNATURE.removeprefix("sha256=")
    changed = digits[:position] + ("0" if digits[position] != "0" else "1") + digits[position + 1 :]
    headers = {"X-Hub-Signature-256": f"sha256={changed}"}
    assert refusal(GITHUB, GITHUB_SECRET.encode(), GITHUB_BODY, headers) == "mismatch"


def test_a_truncated_signature_is_refused_as_bad_encoding() -> None:
    headers = {"X-Hub-Signature-256": GITHUB_SIGNATURE[: len("sha256=") + 16]}
    assert refusal(GITHUB, GITHUB_SECRET.encode(), GITHUB_BODY, headers) == "bad-encoding"


def test_replay_with_a_fresh_timestamp_is_refused_as_mismatch() -> None:
    old = lower(sign(SLACK, b"k", BODY, NOW - 3600))
    replayed = old | {"x-slack-request-timestamp": str(int(NOW))}
    assert refusal(SLACK, b"k", BODY, replayed) == "mismatch"


@pytest.mark.parametrize("preset", ["slack", "stripe", "standard-webhooks"])
def test_stale_timestamp_is_refused_as_timestamp_stale(preset: str) -> None:
    scheme = PRESETS[preset]
    headers = signed(scheme, b"k")
    assert refusal(scheme, b"k", BODY, headers, now=NOW + 301) == "timestamp-stale"


@pytest.mark.parametrize("preset", ["slack", "stripe", "standard-webhooks"])
def test_future_timestamp_is_refused_as_timestamp_future(preset: str) -> None:
    scheme = PRESETS[preset]
    headers = signed(scheme, b"k")
    assert refusal(scheme, b"k", BODY, headers, now=NOW - 301) == "timestamp-future"


@pytest.mark.parametrize("now", [NOW - 300, NOW + 300])
def test_timestamp_at_the_edge_of_the_tolerance_is_accepted(now: float) -> None:
    verify(SLACK, [b"k"], BODY, signed(SLACK, b"k"), now)


@pytest.mark.parametrize("preset", ["slack", "standard-webhooks"])
def test_missing_timestamp_header_is_refused_as_timestamp_missing(preset: str) -> None:
    scheme = PRESETS[preset]
    assert scheme.timestamp_header is not None
    headers = signed(scheme, b"k")
    del headers[scheme.timestamp_header.lower()]
    assert refusal(scheme, b"k", BODY, headers) == "timestamp-missing"


def test_stripe_header_without_t_is_refused_as_timestamp_missing() -> None:
    v1 = hmac.new(b"k", f"{int(NOW)}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert refusal(STRIPE, b"k", BODY, {"Stripe-Signature": f"v1={v1}"}) == "timestamp-missing"


def test_refusal_is_an_unauthorized_hookline_error() -> None:
    error = SignatureInvalid("mismatch")
    assert isinstance(error, HooklineError)
    assert (error.problem_type, error.reason, str(error)) == (
        "unauthorized",
        "mismatch",
        "invalid signature",
    )


# --- key rotation and several signatures ----------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_second_secret_verifies_during_key_rotation(preset: str) -> None:
    scheme = PRESETS[preset]
    verify(scheme, [b"old key", b"new key"], BODY, signed(scheme, b"new key"), NOW)


def test_any_v1_signature_in_a_stripe_header_verifies() -> None:
    t = int(NOW)
    good = hmac.new(b"k", f"{t}.".encode() + BODY, hashlib.sha256).hexdigest()
    other = hmac.new(b"rolled", f"{t}.".encode() + BODY, hashlib.sha256).hexdigest()
    headers = {"stripe-signature": f"t={t}, v1={other}, v1=garbage, v1={good}, v0={other}"}
    verify(STRIPE, [b"k"], BODY, headers, NOW)


def test_any_v1_signature_in_a_standard_webhooks_header_verifies() -> None:
    key = secret_bytes(STANDARD, SW_SECRET)
    other = base64.b64encode(b"\0" * 32).decode()
    headers = {
        "webhook-id": SW_MSG_ID,
        "webhook-timestamp": str(SW_TIMESTAMP),
        "webhook-signature": f"v1a,{other} v1,{other}  v1,%%% {SW_SIGNATURE}",
    }
    verify(STANDARD, [key], SW_BODY, headers, SW_TIMESTAMP)


# --- sign() and verify() are twins ----------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_verifies_what_it_signs(preset: str) -> None:
    scheme = PRESETS[preset]
    key = secret_bytes(scheme, SW_SECRET if preset == "standard-webhooks" else "s3cret")
    verify(scheme, [key], BODY, signed(scheme, key), NOW)


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_custom_scheme_verifies_what_it_signs(algorithm: str, encoding: str) -> None:
    spec = HmacAuth(
        secret="${env:SIGNING_SECRET}",
        header="X-Signature",
        algorithm=algorithm,  # type: ignore[arg-type]
        encoding=encoding,  # type: ignore[arg-type]
        prefix=f"{algorithm}=",
        timestamp_header="X-Timestamp",
        signed_content="{timestamp}:{header:X-Request-Id}:{body}",
    )
    scheme = scheme_from_spec(spec)
    key = secret_bytes(scheme, resolve(str(spec.secret), {"SIGNING_SECRET": "s3cret"}))
    assert key == b"s3cret"
    headers = lower(sign(scheme, key, BODY, NOW, headers={"X-Request-Id": "req-7"}))
    digest = hmac.new(key, f"{int(NOW)}:req-7:".encode() + BODY, algorithm).digest()
    encoded = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()

    assert headers == {
        "x-signature": f"{algorithm}={encoded}",
        "x-timestamp": str(int(NOW)),
        "x-request-id": "req-7",
    }
    verify(scheme, [key], BODY, headers, NOW)
    assert refusal(scheme, key, BODY, headers | {"x-request-id": "req-8"}) == "mismatch"


@settings(database=None, deadline=None)
@given(
    preset=st.sampled_from(sorted(PRESETS)),
    body=st.binary(min_size=1, max_size=2048),
    data=st.data(),
)
def test_signature_holds_for_any_body_and_breaks_on_any_flipped_byte(
    preset: str, body: bytes, data: st.DataObject
) -> None:
    scheme = PRESETS[preset]
    headers = lower(sign(scheme, b"k", body, NOW, msg_id="msg_1"))
    verify(scheme, [b"k"], body, headers, NOW)

    index = data.draw(st.integers(0, len(body) - 1), label="index")
    mask = data.draw(st.integers(1, 255), label="mask")
    flipped = bytearray(body)
    flipped[index] ^= mask
    with pytest.raises(SignatureInvalid) as caught:
        verify(scheme, [b"k"], bytes(flipped), headers, NOW)
    assert caught.value.reason == "mismatch"


def test_sign_needs_a_message_id_when_the_scheme_signs_one() -> None:
    with pytest.raises(ValueError, match=exactly("this scheme signs webhook-id: give a msg_id")):
        sign(STANDARD, b"k", BODY, NOW)


def test_sign_needs_the_headers_the_template_signs() -> None:
    scheme = SignatureScheme(header="X-Sig", signed_content="{header:X-Tenant}.{body}")
    with pytest.raises(ValueError, match=exactly("signed_content signs header x-tenant: give its value")):
        sign(scheme, b"k", BODY, NOW)


def test_verify_needs_a_secret() -> None:
    with pytest.raises(ValueError, match=exactly("verify needs at least one secret")):
        verify(GITHUB, [], BODY, signed(GITHUB, b"k"), NOW)


# --- secrets --------------------------------------------------------------------------


def test_standard_webhooks_secret_is_the_base64_after_whsec() -> None:
    expected = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert secret_bytes(STANDARD, SW_SECRET) == expected
    assert secret_bytes(STANDARD, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == expected


def test_unpadded_standard_webhooks_secret_is_accepted() -> None:
    assert secret_bytes(STANDARD, "whsec_AAECAw") == b"\x00\x01\x02\x03"


def test_malformed_standard_webhooks_secret_is_refused() -> None:
    with pytest.raises(ValueError, match=exactly("a standard-webhooks secret is `whsec_` and base64")):
        secret_bytes(STANDARD, "whsec_not base64!")


@pytest.mark.parametrize(("preset", "secret"), [("standard-webhooks", "whsec_"), ("github", "")])
def test_empty_secret_is_refused(preset: str, secret: str) -> None:
    with pytest.raises(ValueError, match=exactly("the secret is empty")):
        secret_bytes(PRESETS[preset], secret)


def test_stripe_whsec_secret_is_used_as_it_is() -> None:
    assert secret_bytes(STRIPE, "whsec_abc") == b"whsec_abc"


# --- schemes from the trigger file ----------------------------------------------------


def test_preset_gives_its_scheme_with_the_spec_tolerance() -> None:
    scheme = scheme_from_spec(HmacAuth(secret="${env:S}", preset="stripe", tolerance=Duration(60)))
    assert scheme == SignatureScheme(
        header="Stripe-Signature",
        prefix="v1=",
        separator=",",
        timestamp_item="t=",
        signed_content="{timestamp}.{body}",
        tolerance=60.0,
    )
    headers = signed(scheme, b"k")
    assert refusal(scheme, b"k", BODY, headers, now=NOW + 61) == "timestamp-stale"


def test_preset_with_scheme_fields_is_refused() -> None:
    spec = HmacAuth(secret="${env:S}", preset="github", header="X-Sig", encoding="base64")
    message = "preset 'github' fixes the scheme; remove header, encoding or drop the preset"
    with pytest.raises(ValueError, match=exactly(message)):
        scheme_from_spec(spec)


def test_fields_give_the_scheme_without_a_preset() -> None:
    spec = HmacAuth(secret="${env:S}", header="X-Sig", algorithm="sha512", encoding="base64")
    assert scheme_from_spec(spec) == SignatureScheme(header="X-Sig", algorithm="sha512", encoding="base64")


def test_timestamp_header_alone_signs_timestamp_dot_body() -> None:
    spec = HmacAuth(secret="${env:S}", header="X-Sig", timestamp_header="X-Time")
    scheme = scheme_from_spec(spec)
    digest = hmac.new(b"s", f"{int(NOW)}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(scheme, b"s", BODY, NOW) == {"X-Time": str(int(NOW)), "X-Sig": digest}


def test_template_braces_are_doubled_for_literals() -> None:
    assert compile_template("{{v1}}:{body}:{header:X-Id}}}") == (
        b"{v1}:",
        "body",
        b":",
        "header:x-id",
        b"}",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"signed_content": "{payload}"},
            "unknown placeholder {payload} in signed_content; use {body}, {timestamp}, {id} or {header:Name}",
        ),
        (
            {"signed_content": "{body}}"},
            "lone '}' in signed_content; write '}}' for a brace",
        ),
        ({"signed_content": "{timestamp}"}, "signed_content must contain {body} exactly once"),
        ({"signed_content": "{body}{body}"}, "signed_content must contain {body} exactly once"),
        (
            {"signed_content": "{timestamp}.{body}"},
            "signed_content must contain {timestamp} when, and only when, "
            "timestamp_header or timestamp_item is set",
        ),
        (
            {"timestamp_header": "X-Time", "signed_content": "{body}"},
            "signed_content must contain {timestamp} when, and only when, "
            "timestamp_header or timestamp_item is set",
        ),
        (
            {"id_header": "X-Id"},
            "signed_content must contain {id} when, and only when, id_header is set",
        ),
        (
            {"timestamp_header": "X-Time", "timestamp_item": "t=", "separator": ","},
            "give timestamp_header or timestamp_item, not both",
        ),
        ({"timestamp_item": "t="}, "timestamp_item needs a separator (a list-valued header)"),
        ({"timestamp_header": "X-Time", "tolerance": 0.0}, "tolerance must be positive"),
        ({"separator": ""}, "separator and timestamp_item must not be empty"),
        ({"header": "X Sig"}, "invalid header name 'X Sig'"),
        ({"algorithm": "md5"}, "unknown algorithm 'md5'"),
        ({"encoding": "base32"}, "unknown encoding 'base32'"),
    ],
)
def test_invalid_scheme_is_refused(fields: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"header": "X-Sig", **fields}
    with pytest.raises(ValueError, match=exactly(message)):
        SignatureScheme(**arguments)  # type: ignore[arg-type]


# --- what a refused sender is told -----------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "text"),
    [
        ("github", 'X-Hub-Signature-256: sha256=<hex hmac-sha256 of "{body}">'),
        ("shopify", 'X-Shopify-Hmac-Sha256: <base64 hmac-sha256 of "{body}">'),
        (
            "slack",
            'X-Slack-Signature: v0=<hex hmac-sha256 of "v0:{timestamp}:{body}">, timestamp in '
            "X-Slack-Request-Timestamp (within 300 s)",
        ),
        (
            "standard-webhooks",
            'webhook-signature: v1,<base64 hmac-sha256 of "{id}.{timestamp}.{body}">, timestamp in '
            "webhook-timestamp, id in webhook-id (within 300 s)",
        ),
        (
            "stripe",
            'Stripe-Signature: t=<timestamp>,v1=<hex hmac-sha256 of "{timestamp}.{body}"> (within 300 s)',
        ),
    ],
)
def test_each_scheme_describes_what_its_sender_must_send(preset: str, text: str) -> None:
    assert PRESETS[preset].describe() == text


def test_a_custom_timestamped_scheme_describes_its_default_content() -> None:
    scheme = SignatureScheme(header="X-Sig", timestamp_header="X-Ts")
    assert (
        scheme.describe()
        == 'X-Sig: <hex hmac-sha256 of "{timestamp}.{body}">, timestamp in X-Ts (within 300 s)'
    )


def refused_header(scheme: SignatureScheme, headers: Mapping[str, str], secret: bytes = b"k") -> str | None:
    with pytest.raises(SignatureInvalid) as caught:
        verify(scheme, [secret], BODY, lower(headers), NOW)
    return caught.value.header


def test_a_refusal_names_the_header_at_fault() -> None:
    assert refused_header(GITHUB, {}) == "X-Hub-Signature-256"
    assert refused_header(GITHUB, {"X-Hub-Signature-256": "sha256=zz"}) == "X-Hub-Signature-256"
    assert refused_header(STANDARD, {**signed(STANDARD, b"k"), "webhook-id": ""}) == "webhook-id"
    stripe = signed(STRIPE, b"k")
    assert refused_header(STRIPE, {"Stripe-Signature": stripe["stripe-signature"].replace("t=", "t=x")}) == (
        "Stripe-Signature (t=...)"
    )


def test_a_base64_signature_with_stray_characters_is_refused_as_bad_encoding() -> None:
    key = secret_bytes(STANDARD, SW_SECRET)
    headers = {"webhook-id": SW_MSG_ID, "webhook-timestamp": str(SW_TIMESTAMP)}
    stray = SW_SIGNATURE.replace("v1,", "v1,*")
    with pytest.raises(SignatureInvalid) as caught:
        verify(STANDARD, [key], SW_BODY, {**headers, "webhook-signature": stray}, SW_TIMESTAMP)
    assert caught.value.reason == "bad-encoding"


def test_a_standard_webhooks_secret_missing_one_pad_character_is_accepted() -> None:
    padded = SW_SECRET.removeprefix("whsec_")
    raw = base64.b64decode(padded)
    one_short = base64.b64encode(raw[:-1]).decode().rstrip("=")
    assert len(one_short) % 4 == 3
    assert secret_bytes(STANDARD, "whsec_" + one_short) == raw[:-1]
    with pytest.raises(ValueError, match="base64"):
        secret_bytes(STANDARD, "whsec_" + one_short + "*")


def test_a_twelve_digit_timestamp_is_read_and_a_thirteen_digit_one_refused() -> None:
    later = 999_999_999_999
    headers = lower(sign(SLACK, b"k", BODY, later))
    verify(SLACK, [b"k"], BODY, headers, later)
    longer = lower(sign(SLACK, b"k", BODY, 1_000_000_000_000))
    with pytest.raises(SignatureInvalid) as caught:
        verify(SLACK, [b"k"], BODY, longer, 1_000_000_000_000)
    assert caught.value.reason == "bad-encoding"
