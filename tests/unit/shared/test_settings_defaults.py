"""Every default the README's Settings (and Retention, Operating) text states, as loaded from
an environment that sets none of them."""

from __future__ import annotations

from pathlib import Path

from shared.settings import load_settings

BASE = {"HOOKLINE_DATABASE_URL": "postgresql://db/x", "HOOKLINE_AMQP_URL": "amqp://mq/"}

README_DEFAULTS = {
    "host": "127.0.0.1",  # the ingress on 127.0.0.1:8080
    "port": 8080,
    "trigger_queue_max_length": 10_000,
    "flow_lease_seconds": 30,
    "console_session_seconds": 8 * 3600,
    "secure_cookies": False,
    "trusted_proxies": "",  # no forwarded header is believed
    "metrics_port": None,  # off unless given
    "metrics_token": None,
    "log_json": True,  # one JSON object per line
    "retention_every": 300,
    "retention_days": 30,
    "retention_max_days": 365,
    "retention_batch": 1000,
    "max_body_bytes": 10 * 1024 * 1024,
    "max_header_bytes": 64 * 1024,
    "max_header_count": 100,
    "header_timeout": 10,
    "limit_concurrency": 1000,
    "max_json_depth": 128,
    "egress_allow": "",
}


def test_the_defaults_are_the_ones_the_readme_states(tmp_path: Path) -> None:
    settings = load_settings(BASE, state_dir=tmp_path)
    assert {name: getattr(settings, name) for name in README_DEFAULTS} == README_DEFAULTS
