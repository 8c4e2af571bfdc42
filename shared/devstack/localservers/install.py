"""Find the RabbitMQ, Erlang and PostgreSQL programs; as root, install the Debian package."""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from shared.devstack.localservers.errors import LocalServerError

log = logging.getLogger(__name__)


def rabbitmq_bin_dir() -> Path:
    """The folder holding the real `rabbitmq-server` and `rabbitmqctl` scripts."""
    return _found_or_installed("rabbitmq-server", _find_rabbitmq)


def epmd_program() -> Path:
    """Erlang's port mapper daemon, installed with RabbitMQ's Erlang."""
    found = shutil.which("epmd") or next(iter(glob.glob("/usr/lib/erlang/erts-*/bin/epmd")), None)
    if found is None:
        raise LocalServerError("Erlang's epmd was not found; install the `erlang-base` package")
    return Path(found)


def postgres_bin_dir() -> Path:
    """The newest PostgreSQL's folder holding `initdb` and `postgres`."""
    return _found_or_installed("postgresql", _find_postgres)


def _find_rabbitmq() -> Path | None:
    # Debian's /usr/sbin/rabbitmq-server is a wrapper that switches to the system node's
    # user and folder (cd /var/lib/rabbitmq, logs to /var/log/rabbitmq); the real script
    # sits beside `rabbitmq-env`.
    candidates = [Path("/usr/lib/rabbitmq/bin")]
    if on_path := shutil.which("rabbitmq-server"):
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if (folder / "rabbitmq-env").is_file() and (folder / "rabbitmq-server").is_file():
            return folder
    return None


def _find_postgres() -> Path | None:
    # Debian installs every major version side by side; the newest wins.
    folders = [Path(found).parent for found in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    folders.sort(key=lambda folder: _version(folder.parent.name), reverse=True)
    if on_path := shutil.which("initdb"):
        folders.append(Path(on_path).resolve().parent)
    return next((folder for folder in folders if (folder / "postgres").is_file()), None)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def _found_or_installed(package: str, find: Callable[[], Path | None]) -> Path:
    found = find()
    if found is not None:
        return found
    command = f"apt-get install -y {package}"
    if os.geteuid() != 0:
        raise LocalServerError(
            f"{package} is not installed; run `sudo env DEBIAN_FRONTEND=noninteractive "
            f"{command}` (or set the server's URL in the environment instead)"
        )
    log.warning("%s is not installed, running `%s`", package, command)
    if _apt("install", "-y", package) != 0:
        # A fresh machine may have no package lists yet; update once, then retry.
        _apt("update")
        _apt("install", "-y", package)
    found = find()
    if found is None:
        raise LocalServerError(f"`{command}` did not install {package}; see the output above")
    return found


def _apt(*args: str) -> int:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], env=env, check=False).returncode
