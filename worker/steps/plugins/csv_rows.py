"""`csv`: parse CSV text (a partner's export posted as text/csv) into a list of objects.

    - id: rows
      python:
        step: csv
        config: {delimiter: ";", header: true}
        input: "{{ request.body }}"

With `header: true` each row is an object keyed by the first line; otherwise a list of
lists. Cells stay text: `to_number()` in a later expression converts where needed.
"""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Annotated, Any

import msgspec

from shared.errors import WorkflowError

# Texts longer than this are parsed in a thread.
IN_THREAD_ABOVE = 64 * 1024


class CsvConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """How to read the text."""

    delimiter: Annotated[str, msgspec.Meta(min_length=1, max_length=1)] = ","
    header: bool = True
    max_rows: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10_000


class CsvRows:
    """The `csv` python step."""

    Config = CsvConfig

    def __init__(self, config: CsvConfig) -> None:
        self.config = config

    async def run(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise WorkflowError(f"csv: the input must be text, not {type(value).__name__}")
        if len(value) > IN_THREAD_ABOVE:
            # A big export would hold the event loop (and every other run of this worker).
            return await asyncio.to_thread(self._parse, value)
        return self._parse(value)

    def _parse(self, value: str) -> Any:
        # strict: a malformed export fails the step instead of turning into odd rows.
        reader = csv.reader(io.StringIO(value), delimiter=self.config.delimiter, strict=True)
        rows: list[list[str]] = []
        limit = self.config.max_rows + (1 if self.config.header else 0)
        try:
            for row in reader:
                if len(rows) == limit:
                    raise WorkflowError(f"csv: more than {self.config.max_rows} rows (max_rows)")
                rows.append(row)
        except csv.Error as exc:
            raise WorkflowError(f"csv: line {reader.line_num}: {exc}") from None
        if not self.config.header:
            return rows
        if not rows:
            return []
        names, *records = rows
        return [dict(zip(names, record, strict=False)) for record in records]
