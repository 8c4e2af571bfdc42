"""What hookline reads from or rewrites in a database URL keeps a multi-host URL and its TLS options."""

from __future__ import annotations

from pathlib import Path

from shared.db.pool import unreachable
from shared.devstack.demo_erp import _on_database, demo_erp_names
from shared.settings import load_settings

MULTI_HOST = (
    "postgresql://hookline@db1:5432,db2:5433/hookline"
    "?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=/etc/hookline/ca.pem"
)


def test_the_demo_erp_is_named_after_the_database_of_a_multi_host_url() -> None:
    assert demo_erp_names(MULTI_HOST) == {"database": "hookline_demo_erp", "role": "hookline_demo_erp_reader"}


def test_hooklines_own_role_reaches_the_demo_erp_with_every_option_of_its_url() -> None:
    assert _on_database(MULTI_HOST, "hookline_demo_erp") == (
        "postgresql://hookline@db1:5432,db2:5433/hookline_demo_erp"
        "?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=/etc/hookline/ca.pem"
    )


def test_the_erp_roles_dsn_keeps_only_what_a_step_dsn_may_say() -> None:
    assert _on_database(MULTI_HOST, "hookline_demo_erp", "reader:secret") == (
        "postgresql://reader:secret@db1:5432,db2:5433/hookline_demo_erp?sslmode=verify-full"
    )


def test_an_unreachable_reason_is_one_line() -> None:
    error = ValueError('root certificate file "/x" does not exist\nHINT:  Provide the file.')
    assert str(unreachable(error, "postgresql://h/db")) == (
        'cannot reach PostgreSQL: root certificate file "/x" does not exist HINT: Provide the file.'
    )


def test_a_missing_file_the_url_names_is_named(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    url = f"postgresql://h1,h2/db?sslmode=verify-full&sslrootcert={ca}"
    error = FileNotFoundError(2, "No such file or directory")
    assert str(unreachable(error, url)) == f"cannot reach PostgreSQL: sslrootcert file {ca} does not exist"


def test_a_multi_host_url_without_target_session_attrs_reaches_only_a_writable_server() -> None:
    settings = load_settings(
        {
            "HOOKLINE_DATABASE_URL": "postgresql://u@db1:5432,db2:5433/hookline?sslmode=verify-full",
            "HOOKLINE_AMQP_URL": "amqp://h/",
        },
        state_dir=Path("/nonexistent"),
    )
    assert settings.database_url == (
        "postgresql://u@db1:5432,db2:5433/hookline?sslmode=verify-full&target_session_attrs=read-write"
    )


def test_a_url_that_chooses_its_target_session_attrs_or_names_one_host_is_kept() -> None:
    for url in (
        MULTI_HOST,
        "postgresql://u@db1:5432,db2/hookline?target_session_attrs=primary",
        "postgresql://u@db1/h",
    ):
        settings = load_settings(
            {"HOOKLINE_DATABASE_URL": url, "HOOKLINE_AMQP_URL": "amqp://h/"}, state_dir=Path("/nonexistent")
        )
        assert settings.database_url == url
