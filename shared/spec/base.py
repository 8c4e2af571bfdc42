"""What every trigger-file Struct shares: the strict base class and the name pattern."""

from __future__ import annotations

from typing import Annotated

import msgspec

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Name = Annotated[
    str,
    msgspec.Meta(
        pattern=NAME_PATTERN,
        description="lower-case letters, digits, '-' and '_', at most 63 characters",
    ),
]


class Spec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of every trigger-file Struct: unknown keys are errors, values are immutable."""
