"""Webhook signatures (HMAC over the raw body): schemes, sender presets, sign() and verify()."""
