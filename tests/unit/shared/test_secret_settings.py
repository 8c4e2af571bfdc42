"""HOOKLINE_WORKSPACE_ENV and HOOKLINE_SECRETS_KEY: read once, refused when malformed, never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.db.secrets import SecretCipher, new_key
from shared.errors import ConfigError
from shared.settings import load_settings, secrets_key_file
from shared.spec.secrets import MissingSecret, sources_for

BASE = {"HOOKLINE_DATABASE_URL": "postgresql://db/x", "HOOKLINE_AMQP_URL": "amqp://mq/"}


def test_workspace_env_names_the_variables_each_workspace_may_use(tmp_path: Path) -> None:
    settings = load_settings(
        {**BASE, "HOOKLINE_WORKSPACE_ENV": " demo=A, B ;beta=C;demo=D;"}, state_dir=tmp_path
    )
    assert settings.allowed_env == {"demo": frozenset({"A", "B", "D"}), "beta": frozenset({"C"})}


@pytest.mark.parametrize("raw", ["demo", "=A", "demo=A-B", "demo=$(secret-value-91)"])
def test_a_malformed_workspace_env_is_refused_without_echoing_it(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({**BASE, "HOOKLINE_WORKSPACE_ENV": raw}, state_dir=tmp_path)
    assert str(raised.value) == "HOOKLINE_WORKSPACE_ENV: expected workspace=NAME,NAME;workspace=NAME"


def test_a_workspace_gets_one_answer_for_a_forbidden_and_an_unset_variable() -> None:
    environ = {"DEMO_TARGET_KEY": "demo-key-5512", "BETA_KEY": "beta-key-7731"}
    allowed = {"beta": frozenset({"BETA_KEY", "BETA_UNSET"})}
    beta = sources_for("beta", "workspace", allowed, {}, environ)
    assert beta.resolve("${env:BETA_KEY}") == "beta-key-7731"
    answers = []
    for name in ("DEMO_TARGET_KEY", "NOT_SET_ANYWHERE", "BETA_UNSET"):
        with pytest.raises(MissingSecret) as raised:
            beta.resolve(f"${{env:{name}}}")
        answers.append(str(raised.value).replace(name, "NAME"))
    assert answers == ["${env:NAME} is not available to workspace beta"] * 3
    operator = sources_for("beta", "operator", allowed, {}, environ)
    assert operator.resolve("${env:DEMO_TARGET_KEY}") == "demo-key-5512"


def test_a_malformed_secrets_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as raised:
        SecretCipher("not-a-key-but-a-secret-4410")
    assert str(raised.value) == "HOOKLINE_SECRETS_KEY: expected 32 bytes, base64url (hookline secrets key)"
    assert SecretCipher(new_key()).decrypt("w", "n", b"\x00" * 40) is None


def test_hookline_ups_secrets_key_survives_a_restart_and_a_second_terminal_reads_it(tmp_path: Path) -> None:
    first = secrets_key_file(tmp_path)
    assert secrets_key_file(tmp_path) == first
    assert (tmp_path / "secrets.key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "stack.json").write_text(
        '{"amqp_url": "amqp://mq/", "database_url": "postgresql://db/x", "port": 8080}'
    )
    assert load_settings({}, state_dir=tmp_path).secrets_key == first
