"""retry_db waits out a database outage and lets every other error through at once."""

from __future__ import annotations

import pytest

from shared.db.retry import retry_db


async def test_a_lost_connection_is_tried_again_until_the_call_answers() -> None:
    calls: list[int] = []
    retries: list[str] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("database away")
        return "answered"

    assert await retry_db(flaky, lambda error: retries.append(type(error).__name__)) == "answered"
    assert len(calls) == 3
    assert retries == ["ConnectionRefusedError", "ConnectionRefusedError"]


async def test_an_error_that_is_not_an_outage_is_raised_at_once() -> None:
    calls: list[int] = []

    async def broken() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug, not an outage"):
        await retry_db(broken)
    assert calls == [1]
