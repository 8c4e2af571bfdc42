"""Settings are read from HOOKLINE_* variables by the Settings struct's own types."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.settings import load_settings

BASE = {"HOOKLINE_DATABASE_URL": "postgresql://db/x", "HOOKLINE_AMQP_URL": "amqp://mq/"}


def test_numbers_and_booleans_are_read_by_the_fields_type(tmp_path) -> None:
    settings = load_settings(
        {
            **BASE,
            "HOOKLINE_PORT": "9000",
            "HOOKLINE_PUBLISH_TIMEOUT": "2.5",
            "HOOKLINE_LOG_JSON": "false",
            "HOOKLINE_METRICS_PORT": "0",
        },
        state_dir=tmp_path,
    )
    assert (settings.port, settings.publish_timeout, settings.log_json, settings.metrics_port) == (
        9000,
        2.5,
        False,
        0,
    )


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("HOOKLINE_PORT", "abc", "HOOKLINE_PORT: expected `int`, got `str`"),
        ("HOOKLINE_PORT", "1_000", "HOOKLINE_PORT: expected `int`, got `str`"),
        ("HOOKLINE_LOG_JSON", "maybe", "HOOKLINE_LOG_JSON: expected `bool`, got `str`"),
        ("HOOKLINE_PUBLISH_TIMEOUT", "soon", "HOOKLINE_PUBLISH_TIMEOUT: expected `float`, got `str`"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_and_not_echoing_it(tmp_path, name, raw, message) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, name: raw}, state_dir=tmp_path)
    assert str(caught.value) == message


def test_an_empty_variable_counts_as_unset(tmp_path) -> None:
    assert load_settings({**BASE, "HOOKLINE_PORT": ""}, state_dir=tmp_path).port == 8080


def test_trusted_proxies_are_addresses_or_networks(tmp_path) -> None:
    settings = load_settings({**BASE, "HOOKLINE_TRUSTED_PROXIES": " 10.0.0.0/8, ::1 ,"}, state_dir=tmp_path)
    assert settings.trusted_proxy_list == ["10.0.0.0/8", "::1"]
    assert load_settings(BASE, state_dir=tmp_path).trusted_proxy_list == []  # none by default
    with pytest.raises(ConfigError, match=r"HOOKLINE_TRUSTED_PROXIES: '10\.0\.0\.0/33' is not an address"):
        load_settings({**BASE, "HOOKLINE_TRUSTED_PROXIES": "10.0.0.1,10.0.0.0/33"}, state_dir=tmp_path)
