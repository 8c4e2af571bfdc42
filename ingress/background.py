"""What the hot path keeps in memory and a background task writes now and then.

The call only appends to a buffer (no database round trip per call); the task writes it
every `interval` seconds, and `close()` writes what is left at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod


class BackgroundWriter(ABC):
    """Writes what was kept every `interval` seconds in a task of its own."""

    def __init__(self, name: str, interval: float) -> None:
        self._name = name
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_forever(), name=self._name)

    async def close(self) -> None:
        """Stop the task, then write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.write()

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.write()

    @abstractmethod
    async def write(self) -> None:
        """Write what was kept since the last write (nothing to write: return at once)."""
