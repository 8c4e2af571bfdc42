"""The ingress logs in hookline's one format: building the Litestar app must not replace it."""

from __future__ import annotations

import json
import logging

import pytest

from ingress.app import create_app
from shared.logs import setup_logging
from shared.settings import Settings

# As in test_ingress_guards.py: Litestar 2.25's deprecation of the handlers' inferred styles.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*declared using deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:.*Reserved kwarg 'data' declared without a body marker:DeprecationWarning"
    ),
]


def test_lines_logged_after_the_app_is_built_are_still_json(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    # As a fresh ingress process has it (another test's Litestar app may have configured it).
    litestar = logging.getLogger("litestar")
    kept_litestar = litestar.handlers[:], litestar.propagate, litestar.level
    litestar.handlers[:], litestar.propagate, litestar.level = [], True, logging.NOTSET
    try:
        setup_logging("ingress", "INFO", json=True)
        create_app(Settings(database_url="postgresql://x/y", amqp_url="amqp://x", admin_token="a" * 32))
        logging.getLogger("ingress.hooks").warning("after the app was built")
        logging.getLogger("litestar").warning("litestar's own logger")
        lines = capsys.readouterr().err.splitlines()
    finally:
        root.handlers[:], level = kept
        root.setLevel(level)
        litestar.handlers[:], litestar.propagate, litestar.level = kept_litestar
    entries = [json.loads(line) for line in lines]  # a text line fails here
    assert [(x["service"], x["msg"]) for x in entries] == [
        ("ingress", "after the app was built"),
        ("ingress", "litestar's own logger"),
    ]
