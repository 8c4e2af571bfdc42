"""What one ingress process opens in its lifespan; routes read it at call time."""

from __future__ import annotations

import asyncpg

from ingress.hooks import Hooks
from ingress.publishing import InvocationPublisher
from ingress.registry import TriggerRegistry
from shared.db.secrets import SecretCipher
from shared.settings import Settings

# The largest body the management API and the console read (a trigger definition, a form),
# read before the token is checked.
MAX_BODY_BYTES = 4 * 1_048_576


class Resources:
    """The pool, the registry, the publisher and the hot path of one ingress process."""

    pool: asyncpg.Pool
    hooks: Hooks
    publisher: InvocationPublisher
    registry: TriggerRegistry
    settings: Settings
    cipher: SecretCipher | None  # workspace secrets; None when HOOKLINE_SECRETS_KEY is not set
