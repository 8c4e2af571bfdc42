"""The fixtures every in-process module shares: each module gets its own database (and so
its own triggers and lane layouts), settings with a queue-name prefix of its own, and a
dispatcher running as a task of the test. The modules define `ws` (their triggers)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dispatcher.service import Dispatcher
from shared.settings import Settings
from tests.integration.in_process import dispatcher_running, in_process_settings, private_database


@pytest.fixture(scope="module")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """This module's own database (the `db` fixture connects to it too)."""
    async with private_database(postgres_server_url) as url:
        yield url


@pytest.fixture(scope="module")
def settings(amqp_url: str, database_url: str) -> Settings:
    return in_process_settings(amqp_url, database_url)


@pytest.fixture(scope="module")
async def dispatcher(settings: Settings) -> AsyncIterator[Dispatcher]:
    async with dispatcher_running(settings) as running:
        yield running
