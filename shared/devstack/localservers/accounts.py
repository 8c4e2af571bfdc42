"""Which account a private server runs as, and whether that account can reach its folder.

PostgreSQL refuses to run as root and RabbitMQ should not, so as root each server runs as
the account its Debian package created (`postgres`, `rabbitmq`); otherwise as ourselves.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.devstack.localservers.errors import LocalServerError

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True, slots=True)
class Account:
    """A user a server process runs as; `switch` when we must change to it (we are root)."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]
    switch: bool

    def popen_kwargs(self) -> dict[str, Any]:
        """Arguments for `subprocess.Popen`: the user, its group, and no inherited groups."""
        if not self.switch:
            return {}
        # extra_groups=[] drops root's supplementary groups; the server gets exactly its own.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def service_account(name: str) -> Account:
    """The account for the server whose system user is `name`."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return Account(me.pw_name, me.pw_uid, me.pw_gid, frozenset(os.getgroups()), False)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise LocalServerError(
            f"running as root, but there is no user {name!r} to run the server as; "
            f"install the Debian package that creates it, or run as a normal user"
        ) from None
    # Popen(extra_groups=[]) leaves the process with its primary group only.
    return Account(name, entry.pw_uid, entry.pw_gid, frozenset({entry.pw_gid}), True)


def check_traversable(folder: Path, account: Account) -> None:
    """Raise unless `account` may pass through every parent of `folder`.

    `os.access` answers for us, not for another user, so read the mode bits the way the
    kernel does for that user (ACLs aside).
    """
    for parent in reversed(folder.resolve().parents):
        info = parent.stat()
        if info.st_uid == account.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in account.groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            raise LocalServerError(
                f"user {account.name!r} cannot enter {parent} (mode "
                f"{stat.filemode(info.st_mode)}, owner {_user(info.st_uid)}), so it cannot "
                f"reach {folder}; run `chmod o+x {parent}` or choose a data folder whose "
                f"parents all allow others to enter (mode o+x)"
            )


def hand_over(folder: Path, account: Account) -> None:
    """Give `folder` and everything in it to `account` (a no-op when we run as ourselves)."""
    if not account.switch:
        return
    for root, dirs, files in os.walk(folder):
        for name in [root, *(os.path.join(root, entry) for entry in dirs + files)]:
            info = os.lstat(name)
            if (info.st_uid, info.st_gid) != (account.uid, account.gid):
                os.lchown(name, account.uid, account.gid)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
