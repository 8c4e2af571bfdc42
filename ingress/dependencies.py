"""What handlers are given: the resources in `app.state`, as Litestar dependencies.

`create_app` puts the settings and the secrets cipher in the state; the lifespan adds the
pool, the registry, the publisher and the hot path once they are open. A handler names
what it needs by name and type (`pool: PoolDep`, `settings: SettingsDep`); guards, which
run before any dependency is resolved (and before the body is read), read the state through
the same functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from ingress.hooks import Hooks
from ingress.publishing import InvocationPublisher
from ingress.registry import TriggerRegistry
from shared.db.secrets import SecretCipher
from shared.settings import Settings

# Handler parameter types: `pool: PoolDep` is the `pool` dependency (named, as Litestar 3 requires).
SettingsDep = NamedDependency[Settings]
CipherDep = NamedDependency[SecretCipher | None]
PoolDep = NamedDependency[asyncpg.Pool]
RegistryDep = NamedDependency[TriggerRegistry]
PublisherDep = NamedDependency[InvocationPublisher]
HooksDep = NamedDependency[Hooks]


def settings_of(state: State) -> Settings:
    settings: Settings = state.settings
    return settings


def cipher_of(state: State) -> SecretCipher | None:
    """Workspace secrets' cipher; None when HOOKLINE_SECRETS_KEY is not set."""
    cipher: SecretCipher | None = state.cipher
    return cipher


def pool_of(state: State) -> asyncpg.Pool:
    pool: asyncpg.Pool = state.pool
    return pool


def registry_of(state: State) -> TriggerRegistry:
    registry: TriggerRegistry = state.registry
    return registry


def publisher_of(state: State) -> InvocationPublisher:
    publisher: InvocationPublisher = state.publisher
    return publisher


def hooks_of(state: State) -> Hooks:
    hooks: Hooks = state.hooks
    return hooks


_PROVIDERS: dict[str, Callable[[State], Any]] = {
    "settings": settings_of,
    "cipher": cipher_of,
    "pool": pool_of,
    "registry": registry_of,
    "publisher": publisher_of,
    "hooks": hooks_of,
}


def resource_dependencies() -> dict[str, Provide]:
    """The app's dependencies, one per resource (read at each call: a lifespan may reopen them)."""
    return {name: Provide(of, sync_to_thread=False) for name, of in _PROVIDERS.items()}
