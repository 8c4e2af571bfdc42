"""What the database is given as JSON: U+0000 made U+FFFD without walking the value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.db.pool import json_text


def _nested(depth: int, bottom: Any) -> Any:
    value = bottom
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [500, 600, 700, 800])
def test_a_nul_at_the_bottom_of_a_deeply_nested_body_is_scrubbed_without_recursion(depth: int) -> None:
    assert json_text(_nested(depth, "a\x00b")) == "[" * depth + '"a\\ufffdb"' + "]" * depth


def test_nul_is_scrubbed_in_keys_and_values_and_the_text_backslash_u0000_is_kept() -> None:
    value = {"k\x00": ["\x00", "\\u0000", "\\\x00", "\\\\u0000"]}
    assert json.loads(json_text(value)) == {"k\ufffd": ["\ufffd", "\\u0000", "\\\ufffd", "\\\\u0000"]}
