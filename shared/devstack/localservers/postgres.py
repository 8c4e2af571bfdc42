"""A private PostgreSQL cluster: initdb on first use, TCP on 127.0.0.1 only, no Unix socket.

The cluster lives in `<data_dir>/pgdata` with trust authentication for the superuser
`hookline`; the machine's own cluster (port 5432, /etc/postgresql) is never read.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from shared.devstack.localservers.accounts import check_traversable, hand_over, service_account
from shared.devstack.localservers.errors import LocalServerError
from shared.devstack.localservers.install import postgres_bin_dir
from shared.devstack.localservers.ports import (
    LOOPBACK,
    Recorded,
    claim_port,
    write_recorded,
)
from shared.devstack.localservers.processes import (
    log_tail,
    reap_leftovers,
    spawn,
    stop_process,
    wait_ready,
)
from shared.devstack.localservers.server import LocalServer

if TYPE_CHECKING:
    from shared.devstack.localservers.accounts import Account

log = logging.getLogger(__name__)

USER = "hookline"
DATABASE = "hookline"
_DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = 'hookline'"

# Durability traded for speed, for tests only: a crash of the machine may lose the cluster.
_FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
_DURABLE_SETTINGS = ("fsync=on",)


class LocalPostgres(LocalServer):
    """One PostgreSQL cluster run from `data_dir`; `start()` returns its database URL."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        fast: bool = False,
        settings: tuple[str, ...] = (),
        listen: Sequence[str] = (),
    ) -> None:
        """`listen`: interfaces (`10.231.0.1/30`) to take connections on besides loopback, as
        a test's veth; clients from their networks are trusted as loopback's are."""
        super().__init__(data_dir, port)
        self._fast = fast
        self._settings = settings  # more `name=value` server settings (replication, TLS)
        self._listen = tuple(ipaddress.ip_interface(i) for i in listen)

    @property
    def url(self) -> str:
        """The URL of the `hookline` database, as its superuser (no password: trust)."""
        return f"postgresql://{USER}@{LOOPBACK}:{self._port}/{DATABASE}"

    @property
    def log_file(self) -> Path:
        """The server's log (its stderr)."""
        return self._data / "postgres.log"

    def start(self, timeout: float = 60) -> str:
        """Start the server (initdb first if needed; a no-op when it runs); return the URL."""
        if self.pid is not None:
            return self.url
        self.stop()  # what is left of a server that died: its backends
        bin_dir = postgres_bin_dir()
        account = service_account("postgres")
        data = self._data
        data.mkdir(parents=True, exist_ok=True)
        check_traversable(data, account)
        self._port = claim_port(self._port, fixed=self._fixed_port, what=f"PostgreSQL in {data}")
        write_recorded(data, Recorded(port=self._port))
        hand_over(data, account)
        began = time.monotonic()
        if not (data / "pgdata" / "PG_VERSION").exists():
            self._initdb(bin_dir, account)
        self._account = account
        try:
            self._server = spawn(
                self._command(bin_dir),
                account=account,
                env=_environment(),
                cwd=data,
                output=self.log_file,
                # Fast shutdown: SIGTERM would wait for every client to disconnect first.
                death_signal=signal.SIGINT,
            )
            wait_ready(
                self._accepts_queries,
                self._server,
                what="PostgreSQL",
                timeout=timeout,
                logs=(self.log_file,),
            )
            self._create_database()
        except BaseException:
            self.stop()
            raise
        log.info("PostgreSQL ready on port %d in %.1f s", self._port, time.monotonic() - began)
        return self.url

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected), waiting until every process is gone."""
        if self._server is not None:
            stop_process(self._server, signal.SIGINT, what="PostgreSQL", timeout=60)
            self._server = None
        if self._account is not None:
            reap_leftovers(self._data, self._account, timeout=10)
            self._account = None

    def kill(self) -> None:
        """SIGKILL the server and every backend of it at once, as a crash of its host would."""
        if self._server is not None and self._server.poll() is None:
            # Its own session (spawn): the process group is the postmaster and its children.
            os.killpg(self._server.pid, signal.SIGKILL)
            self._server.wait()

    def promote(self, timeout: float = 60) -> None:
        """Promote a standby to a primary (`pg_ctl promote`), waiting until it accepts writes."""
        assert self._account is not None, "promote a running standby"
        command = [str(postgres_bin_dir() / "pg_ctl"), "promote", "-w", "-t", str(int(timeout))]
        done = subprocess.run(
            [*command, "-D", str(self._data / "pgdata")],
            capture_output=True,
            text=True,
            timeout=timeout + 10,
            env=_environment(),
            cwd=self._data,
            check=False,
            **self._account.popen_kwargs(),
        )
        if done.returncode != 0:
            raise LocalServerError(f"pg_ctl promote failed: {(done.stdout + done.stderr).strip()}")

    def query(self, sql: str, database: str = "postgres") -> str:
        """The unaligned text `psql -c sql` prints (LocalServerError when it fails)."""
        done = self._client("psql", "-d", database, "-tAc", sql)
        if done.returncode != 0:
            raise LocalServerError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def _initdb(self, bin_dir: Path, account: Account) -> None:
        pgdata = self._data / "pgdata"
        if pgdata.exists():
            # PG_VERSION is among initdb's first writes: without it this is a torn initdb.
            log.warning("%s holds no cluster (no PG_VERSION), running initdb again", pgdata)
            shutil.rmtree(pgdata)
        command = [
            str(bin_dir / "initdb"),
            *("-D", str(pgdata), "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C"),
            *(["--no-sync"] if self._fast else []),
        ]
        initdb_log = self._data / "initdb.log"
        with initdb_log.open("ab") as out:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_environment(),
                cwd=self._data,
                check=False,
                **account.popen_kwargs(),
            )
        if done.returncode != 0:
            raise LocalServerError(f"initdb failed with code {done.returncode}; {log_tail(initdb_log)}")

    def _command(self, bin_dir: Path) -> list[str]:
        settings = [
            f"listen_addresses={','.join([LOOPBACK, *(str(i.ip) for i in self._listen)])}",
            *([f"hba_file={self._write_hba()}"] if self._listen else []),
            # No Unix socket: nothing to collide with in /var/run/postgresql, and no
            # 107-byte socket path limit on deep temporary folders.
            "unix_socket_directories=",
            "max_connections=200",
            *(_FAST_SETTINGS if self._fast else _DURABLE_SETTINGS),
            *self._settings,
        ]
        command = [str(bin_dir / "postgres"), "-D", str(self._data / "pgdata")]
        command += ["-p", str(self._port)]
        for setting in settings:
            command += ["-c", setting]
        return command

    def _write_hba(self) -> Path:
        """initdb's rules (trust on loopback) and trust from the `listen` networks, outside
        pgdata: the next start without them reads initdb's own file again."""
        path = self._data / "pg_hba.conf"
        networks = ["127.0.0.1/32", "::1/128", *(str(i.network) for i in self._listen)]
        rules = [f"host {db} all {net} trust" for net in networks for db in ("all", "replication")]
        path.write_text(
            "# Written by hookline's LocalPostgres at start; edits are lost.\n" + "\n".join(rules) + "\n"
        )
        return path

    def _client(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one of PostgreSQL's own client programs against this cluster."""
        command = [
            str(postgres_bin_dir() / program),
            "-h",
            LOOPBACK,
            "-p",
            str(self._port),
            "-U",
            USER,
            *args,
        ]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=10, env=_environment(), check=False
        )

    def _accepts_queries(self) -> bool:
        # pg_isready exits 0 once the server accepts connections (1: starting, 2: no answer).
        return self._client("pg_isready", "-d", "postgres", "-t", "2").returncode == 0

    def _create_database(self) -> None:
        exists = self._client("psql", "-d", "postgres", "-tAc", _DATABASE_EXISTS)
        if exists.returncode != 0:
            raise LocalServerError(f"PostgreSQL refused us: {exists.stderr.strip()}")
        if exists.stdout.strip() != "1":
            created = self._client("createdb", DATABASE)
            if created.returncode != 0:
                raise LocalServerError(f"cannot create database {DATABASE}: {created.stderr.strip()}")


def _environment() -> dict[str, str]:
    # Nothing inherited: a PGDATA, PGPORT or locale from the caller's shell must not leak in.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
