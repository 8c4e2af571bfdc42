"""A private PostgreSQL primary with a synchronous streaming standby, for failover tests.

The standby is a `pg_basebackup -R` of the primary, streaming from it; the primary has
`synchronous_standby_names = '*'`, so a commit is acknowledged only once the standby has
flushed it: no acknowledged transaction is lost when the primary dies and the standby is
promoted. The standby itself runs without a synchronous standby of its own, so once
promoted it commits alone. Clients use the multi-host `url` with
`target_session_attrs=read-write`, which reaches whichever of the two is the primary.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from shared.devstack.localservers.accounts import check_traversable, hand_over, service_account
from shared.devstack.localservers.errors import LocalServerError
from shared.devstack.localservers.install import postgres_bin_dir
from shared.devstack.localservers.ports import LOOPBACK
from shared.devstack.localservers.postgres import DATABASE, USER, LocalPostgres

# fsync stays off (a killed process leaves its writes in the page cache); synchronous_commit
# stays on: with it off, a commit would not wait for the standby.
# The primary is made synchronous only once its standby streams (ALTER SYSTEM, see `start`):
# before that, every commit (createdb's too) would wait for a standby that is not there.
_PRIMARY_SETTINGS = ("fsync=off", "wal_level=replica")
_STANDBY_SETTINGS = ("fsync=off", "hot_standby=on")


class LocalPostgresPair:
    """A primary and its synchronous standby run from `data_dir`; `start()` returns the multi-host URL."""

    def __init__(self, data_dir: Path) -> None:
        self._data = data_dir
        self.primary = LocalPostgres(data_dir / "primary", settings=_PRIMARY_SETTINGS)
        self.standby = LocalPostgres(data_dir / "standby", settings=_STANDBY_SETTINGS)

    @property
    def url(self) -> str:
        """Both servers, primary first; asyncpg takes the one that accepts writes."""
        hosts = f"{LOOPBACK}:{self.primary.port},{LOOPBACK}:{self.standby.port}"
        return f"postgresql://{USER}@{hosts}/{DATABASE}?target_session_attrs=read-write"

    def start(self, timeout: float = 60) -> str:
        """Start the primary, clone the standby from it (first time only), start it, wait for sync."""
        self.primary.start(timeout)
        folder = self._data / "standby"
        if not (folder / "pgdata" / "PG_VERSION").exists():
            self._base_backup(folder, timeout)
        self.standby.start(timeout)
        self.primary.query("alter system set synchronous_standby_names = '*'")
        self.primary.query("select pg_reload_conf()")
        self._wait_synchronous(timeout)
        return self.url

    def kill_primary(self) -> None:
        """The primary's host crashes: every process of it SIGKILLed at once."""
        self.primary.kill()

    def promote_standby(self) -> None:
        """The operator (or a failover manager) promotes the standby: it now accepts writes."""
        self.standby.promote()

    def stop(self) -> None:
        """Stop both servers (the standby first: a primary waiting for it would hang commits)."""
        self.standby.stop()
        self.primary.stop()

    def _base_backup(self, folder: Path, timeout: float) -> None:
        account = service_account("postgres")
        folder.mkdir(parents=True, exist_ok=True)
        check_traversable(folder, account)
        hand_over(folder, account)
        source = ["-h", LOOPBACK, "-p", str(self.primary.port), "-U", USER]
        done = subprocess.run(
            [
                str(postgres_bin_dir() / "pg_basebackup"),
                *source,
                "-D",
                str(folder / "pgdata"),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd=folder,
            check=False,
            **account.popen_kwargs(),
        )
        if done.returncode != 0:
            raise LocalServerError(f"pg_basebackup failed: {(done.stdout + done.stderr).strip()}")

    def _wait_synchronous(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.primary.query("select sync_state from pg_stat_replication") != "sync":
            if time.monotonic() > deadline:
                raise LocalServerError(f"the standby did not become synchronous within {timeout:.0f} s")
            time.sleep(0.1)
