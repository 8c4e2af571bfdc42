"""Text log lines (HOOKLINE_LOG_JSON=false) cannot be forged or split by what a caller sends."""

from __future__ import annotations

import logging

from shared.logs import TextFormatter


def _line(message: str, *args: object) -> str:
    record = logging.LogRecord("ingress.problems", logging.WARNING, __file__, 1, message, args, None)
    record.created = 0.0
    return TextFormatter("ingress").format(record)


def test_a_nul_and_a_newline_in_a_request_path_reach_the_text_log_escaped() -> None:
    line = _line("refused %s %s", "POST", "/hooks/a\x00b\n00:00:00 ingress    info    forged\r\x1b[31m")
    assert line.endswith(
        "warning refused POST /hooks/a\\x00b\\n00:00:00 ingress    info    forged\\r\\x1b[31m"
    )
    assert "\n" not in line
    assert "\x00" not in line


def test_a_text_line_keeps_readable_text_as_it_is() -> None:
    assert _line("no trigger %r in workspace %r", "café ☕", "démo").endswith(
        "warning no trigger 'café ☕' in workspace 'démo'"
    )
