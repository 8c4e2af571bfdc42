"""Step checkpoints: the outputs of a run's effect steps, kept so that no retry repeats them."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from shared.db.pool import Connection, json_text


class Checkpoint(msgspec.Struct, frozen=True):
    """One effect step that succeeded: its output (as later steps see it) and its record."""

    output: Any
    record: dict[str, Any]


def checkpoint_text(checkpoint: Checkpoint) -> tuple[str, str]:
    """The output and the record as the JSON text stored (encoded once, to be measured)."""
    return json_text(checkpoint.output), json_text(checkpoint.record)


async def save_checkpoint(
    connection: Connection, execution_id: str, step_id: str, text: tuple[str, str]
) -> None:
    """Keep a step's checkpoint, `checkpoint_text` (a second save of the same step wins)."""
    await connection.execute(
        """insert into step_checkpoints (execution_id, step_id, output, record)
           values ($1, $2, $3::text::json, $4::text::json)
           on conflict (execution_id, step_id)
           do update set output = excluded.output, record = excluded.record, recorded_at = now()""",
        uuid.UUID(execution_id),
        step_id,
        *text,
    )


async def load_checkpoints(connection: Connection, execution_id: str) -> dict[str, Checkpoint]:
    """Every checkpoint of an execution, by step id."""
    rows = await connection.fetch(
        "select step_id, output::text, record::text from step_checkpoints where execution_id = $1",
        uuid.UUID(execution_id),
    )
    return {
        row["step_id"]: Checkpoint(msgspec.json.decode(row["output"]), msgspec.json.decode(row["record"]))
        for row in rows
    }
