"""Where a trigger's idempotency key is read: a preset's delivery id, else the trigger's header.

Review #18: a captured GitHub delivery verifies again, and the default header was
`Idempotency-Key`, which GitHub never sends, so a replay ran again.
"""

from __future__ import annotations

import pytest

from shared.signatures.presets import idempotency_headers
from shared.spec.loader import load_text


def _trigger(auth: str, idempotency: str = "") -> object:
    text = f"workspace: ws\ntriggers:\n  - name: t\n    auth: {auth}\n" + (
        f"    idempotency: {idempotency}\n" if idempotency else ""
    )
    [workspace] = load_text(text)
    return workspace.triggers[0]


@pytest.mark.parametrize(
    ("preset", "headers"),
    [
        ("github", ("x-github-delivery",)),
        ("shopify", ("x-shopify-webhook-id",)),
        ("standard-webhooks", ("webhook-id",)),
        # No delivery id in a header; their signed timestamp bounds a replay.
        ("stripe", ("idempotency-key", "webhook-id")),
        ("slack", ("idempotency-key", "webhook-id")),
    ],
)
def test_presets_take_their_senders_delivery_id_as_the_idempotency_key(
    preset: str, headers: tuple[str, ...]
) -> None:
    trigger = _trigger(f'{{type: hmac, preset: {preset}, secret: "${{env:S}}"}}')
    assert idempotency_headers(trigger) == headers  # type: ignore[arg-type]


def test_a_trigger_that_names_its_idempotency_header_keeps_it_and_null_turns_it_off() -> None:
    github = '{type: hmac, preset: github, secret: "${env:S}"}'
    assert idempotency_headers(_trigger(github, "{header: X-Event-Id}")) == ("x-event-id", "webhook-id")  # type: ignore[arg-type]
    assert idempotency_headers(_trigger(github, "null")) == ()  # type: ignore[arg-type]
    assert idempotency_headers(_trigger("{type: none}")) == ("idempotency-key", "webhook-id")  # type: ignore[arg-type]
