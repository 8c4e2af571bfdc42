"""Signature schemes of well-known senders, and the scheme a trigger's `hmac` auth asks for.

Each preset follows the sender's public documentation:
  github             X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>
  shopify            X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>
  slack              X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">,
                     timestamp in X-Slack-Request-Timestamp
  stripe             Stripe-Signature: t=<timestamp>,v1=<hex HMAC-SHA256 of
                     "{timestamp}.{body}">[,v1=...][,v0=...]; the `whsec_...` secret is
                     the key as it is
  standard-webhooks  webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">
                     [ v1,...], with webhook-id and webhook-timestamp; the key is the base64
                     after `whsec_`

A captured delivery verifies again, so the presets whose senders name each delivery take that
name as the idempotency key (DELIVERY_ID_HEADERS): a replay within the window runs nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

import msgspec

from shared.signatures.scheme import SignatureScheme
from shared.spec.model import HmacAuth, Idempotency, Trigger

PRESETS: Mapping[str, SignatureScheme] = MappingProxyType(
    {
        "github": SignatureScheme(header="X-Hub-Signature-256", prefix="sha256="),
        "shopify": SignatureScheme(header="X-Shopify-Hmac-Sha256", encoding="base64"),
        "slack": SignatureScheme(
            header="X-Slack-Signature",
            prefix="v0=",
            timestamp_header="X-Slack-Request-Timestamp",
            signed_content="v0:{timestamp}:{body}",
        ),
        "stripe": SignatureScheme(
            header="Stripe-Signature",
            prefix="v1=",
            separator=",",
            timestamp_item="t=",
            signed_content="{timestamp}.{body}",
        ),
        "standard-webhooks": SignatureScheme(
            header="webhook-signature",
            encoding="base64",
            prefix="v1,",
            separator=" ",
            timestamp_header="webhook-timestamp",
            id_header="webhook-id",
            signed_content="{id}.{timestamp}.{body}",
            key_encoding="whsec-base64",
        ),
    }
)

# Where each sender names a delivery (the same name on its retries). Stripe and Slack send
# none in a header (Stripe's event id is in the body); their signed timestamp bounds a replay
# to the tolerance. GitHub and Shopify do not sign theirs: it stops a replay as captured, not
# one whose sender changes the header.
DELIVERY_ID_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "github": "X-GitHub-Delivery",
        "shopify": "X-Shopify-Webhook-Id",
        "standard-webhooks": "webhook-id",
    }
)
_DEFAULT_IDEMPOTENCY_HEADER = Idempotency().header
# A key in `webhook-id` is taken too, as senders following Standard Webhooks name deliveries.
_STANDARD_ID = "webhook-id"


def idempotency_headers(trigger: Trigger) -> tuple[str, ...]:
    """The headers a trigger's idempotency key is read from, the first one present wins.

    A preset's delivery-id header alone, unless the trigger names its own `idempotency.header`
    (a caller cannot then dodge deduplication by adding an `Idempotency-Key`).
    """
    rule = trigger.idempotency
    if rule is None:
        return ()
    preset = trigger.auth.preset if isinstance(trigger.auth, HmacAuth) else None
    if preset is not None and preset in DELIVERY_ID_HEADERS and rule.header == _DEFAULT_IDEMPOTENCY_HEADER:
        return (DELIVERY_ID_HEADERS[preset].lower(),)
    return (rule.header.lower(), _STANDARD_ID)


# The HmacAuth fields a preset fixes; only `tolerance` may be set beside a preset.
_SCHEME_FIELDS = ("header", "algorithm", "encoding", "prefix", "timestamp_header", "signed_content")


def scheme_from_spec(spec: HmacAuth) -> SignatureScheme:
    """The scheme of an `hmac` auth: its preset (with the spec's tolerance), else its fields.

    ValueError when a preset is combined with scheme fields (they would be ignored) or when
    the fields do not make a valid scheme.
    """
    if spec.preset is not None:
        defaults = {f.name: f.default for f in msgspec.structs.fields(HmacAuth)}
        given = [name for name in _SCHEME_FIELDS if getattr(spec, name) != defaults[name]]
        if given:
            raise ValueError(
                f"preset {spec.preset!r} fixes the scheme; remove {', '.join(given)} or drop the preset"
            )
        return dataclasses.replace(PRESETS[spec.preset], tolerance=float(spec.tolerance))
    if spec.header is None:  # HmacAuth.__post_init__ refuses this already
        raise ValueError("hmac needs a `preset` or a `header`")
    return SignatureScheme(
        header=spec.header,
        algorithm=spec.algorithm,
        encoding=spec.encoding,
        prefix=spec.prefix,
        timestamp_header=spec.timestamp_header,
        signed_content=spec.signed_content,
        tolerance=float(spec.tolerance),
    )
