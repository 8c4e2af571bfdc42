"""HOOKLINE_AMQP_URL: amqps:// checks the broker's certificate, and a URL that would not is refused
at the start, in one line that never repeats the URL (it holds the password)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.settings import load_settings
from tests.private_ca import PrivateCA

PASSWORD = "Pa55-in-the-url"


def settings_for(url: str, tmp_path: Path) -> object:
    return load_settings(
        {"HOOKLINE_DATABASE_URL": "postgresql://db/x", "HOOKLINE_AMQP_URL": url}, state_dir=tmp_path
    )


def refusal(url: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_for(url, tmp_path)
    assert PASSWORD not in str(caught.value)
    return str(caught.value)


def test_an_amqps_url_with_its_ca_and_a_client_certificate_is_taken_as_it_is(tmp_path: Path) -> None:
    authority = PrivateCA(tmp_path)
    client = authority.server(names=("client.example",), addresses=())  # a key pair it signed
    url = (
        f"amqps://u:{PASSWORD}@mq:5671/vh?cafile={authority.cert}&certfile={client.cert}&keyfile={client.key}"
    )
    assert settings_for(url, tmp_path).amqp_url == url  # type: ignore[attr-defined]
    assert settings_for("amqps://u:p@mq/", tmp_path)  # the system's CAs


@pytest.mark.parametrize("value", ["1", "true", "yes", ""])
def test_no_verify_ssl_is_refused_whatever_its_value(tmp_path: Path, value: str) -> None:
    # aiormq turns verification off for any value but "0".
    assert refusal(f"amqps://u:{PASSWORD}@mq/?no_verify_ssl={value}", tmp_path) == (
        "HOOKLINE_AMQP_URL: no_verify_ssl turns off the check of the broker's certificate, "
        "which hookline refuses; name the CA that signed it with ?cafile="
    )


def test_tls_files_on_a_plain_amqp_url_are_refused(tmp_path: Path) -> None:
    assert refusal(f"amqp://u:{PASSWORD}@mq/?cafile=/etc/hosts", tmp_path) == (
        "HOOKLINE_AMQP_URL: cafile on an amqp:// URL, which is plain TCP; use amqps://"
    )


def test_missing_unusable_or_incomplete_tls_files_are_refused_at_the_start(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    assert refusal(f"amqps://u:{PASSWORD}@mq/?cafile={missing}", tmp_path) == (
        f"HOOKLINE_AMQP_URL: cafile {missing} cannot be read"
    )
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert refusal(f"amqps://u:{PASSWORD}@mq/?cafile={junk}", tmp_path).startswith(
        "HOOKLINE_AMQP_URL: the TLS files given cannot be used ([X509: NO_CERTIFICATE_OR_CRL_FOUND]"
    )
    assert refusal(f"amqps://u:{PASSWORD}@mq/?keyfile={junk}", tmp_path) == (
        "HOOKLINE_AMQP_URL: keyfile without certfile (the client certificate it belongs to)"
    )


def test_another_scheme_is_refused_and_each_of_several_urls_is_checked(tmp_path: Path) -> None:
    assert refusal(f"http://u:{PASSWORD}@mq/", tmp_path) == (
        "HOOKLINE_AMQP_URL: URL 1 of 1 is not an amqp:// or amqps:// URL"
    )
    assert refusal(f"amqps://u:{PASSWORD}@a/,amqps://u:{PASSWORD}@b/?no_verify_ssl=1", tmp_path).startswith(
        "HOOKLINE_AMQP_URL (URL 2 of 2): no_verify_ssl turns off"
    )
