"""Private RabbitMQ and PostgreSQL server processes for tests and `hookline up`, no Docker.

Each server runs from a data folder of its own, on free ports of 127.0.0.1, as the
`rabbitmq` / `postgres` user when we are root, in its own session (a Ctrl-C reaches only
us; `stop()` stops it) and with a parent-death signal (it dies if we are SIGKILLed).
The machine's own servers, their ports and their /etc files are never touched.

    with LocalPostgres(folder / "postgres") as database_url:
        ...  # the server runs here, and is gone after the block

The data folder's parents must be enterable by those users (mode o+x): pytest's tmp_path
is not; `tempfile.mkdtemp()` then `chmod(0o755)` is.
"""

from __future__ import annotations

from shared.devstack.localservers.errors import LocalServerError
from shared.devstack.localservers.ports import free_port
from shared.devstack.localservers.postgres import LocalPostgres
from shared.devstack.localservers.processes import processes_mentioning
from shared.devstack.localservers.rabbitmq import LocalRabbitMQ

__all__ = ["LocalPostgres", "LocalRabbitMQ", "LocalServerError", "free_port", "processes_mentioning"]
