"""What a private server run from a data folder has, whichever server it is."""

from __future__ import annotations

import os
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from shared.devstack.localservers.ports import Recorded, free_port, read_recorded

if TYPE_CHECKING:
    from types import TracebackType

    from shared.devstack.localservers.accounts import Account


class LocalServer(ABC):
    """One server process run from `data_dir`, on a port recorded there; `start()` gives its URL.

    A `with` block starts it and stops it.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        # Absolute but not resolved: the folder is named in the server's command line and
        # environment as the caller spelled it.
        self._data = Path(os.path.abspath(data_dir))
        self._recorded: Recorded = read_recorded(self._data)
        self._fixed_port = port is not None
        self._port = port or self._recorded.port or free_port()
        self._server: subprocess.Popen[bytes] | None = None
        self._account: Account | None = None

    @property
    @abstractmethod
    def url(self) -> str:
        """The URL clients use."""

    @property
    def port(self) -> int:
        """The TCP port clients use."""
        return self._port

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        if self._server is None or self._server.poll() is not None:
            return None
        return self._server.pid

    @abstractmethod
    def start(self, timeout: float = 60) -> str:
        """Start the server (a no-op when it runs) and return its URL once it answers."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the server and wait until every process of it is gone."""

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
