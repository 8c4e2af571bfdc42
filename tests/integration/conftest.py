"""Fixtures the integration files share (the session's servers and stack are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.integration.target import Target, running_target
from tests.stack import Services

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """A local HTTP target that records every call (tests/integration/target.py)."""
    with running_target() as running:
        yield running


@pytest.fixture
async def api(stack: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The management API of the session's stack, as the admin."""
    async with httpx.AsyncClient(base_url=f"{stack.base_url}/api", headers=ADMIN, timeout=30) as client:
        yield client


@pytest.fixture
def admin(api: httpx.AsyncClient) -> httpx.AsyncClient:
    """`api`, by the name the tenant tests use beside a workspace token's client."""
    return api
