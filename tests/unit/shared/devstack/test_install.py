"""README: `make run` starts RabbitMQ "from the Debian package `rabbitmq-server`, installed with
apt-get when missing and you are root" (apt-get itself replaced here: no package is installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.devstack.localservers import LocalServerError, install

SERVER = Path("/usr/lib/rabbitmq/bin")


def _apt_answering(monkeypatch: pytest.MonkeyPatch, *codes: int) -> list[tuple[str, ...]]:
    ran: list[tuple[str, ...]] = []
    answers = list(codes)

    def apt(*args: str) -> int:
        ran.append(args)
        return answers.pop(0) if answers else 0

    monkeypatch.setattr(install.os, "geteuid", lambda: 0)
    monkeypatch.setattr(install, "_apt", apt)
    return ran


def test_root_gets_the_missing_package_installed_with_apt_get(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _apt_answering(monkeypatch, 0)
    found = iter([None, SERVER])
    assert install._found_or_installed("rabbitmq-server", lambda: next(found)) == SERVER
    assert ran == [("install", "-y", "rabbitmq-server")]


def test_without_package_lists_apt_get_updates_once_and_installs_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran = _apt_answering(monkeypatch, 100, 0, 0)
    found = iter([None, SERVER])
    assert install._found_or_installed("rabbitmq-server", lambda: next(found)) == SERVER
    assert ran == [("install", "-y", "rabbitmq-server"), ("update",), ("install", "-y", "rabbitmq-server")]


def test_an_install_that_leaves_no_server_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _apt_answering(monkeypatch, 0)
    with pytest.raises(LocalServerError) as failed:
        install._found_or_installed("rabbitmq-server", lambda: None)
    assert (
        str(failed.value)
        == "`apt-get install -y rabbitmq-server` did not install rabbitmq-server; see the output above"
    )


def test_a_server_already_there_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _apt_answering(monkeypatch)
    assert install._found_or_installed("rabbitmq-server", lambda: SERVER) == SERVER
    assert ran == []
