"""What every step kind provides, and what a run hands to each step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Answer:
    """A response decided by a `respond` step: ends the run."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass
class RunContext:
    """The data expressions see, growing as steps finish, and the answer once decided."""

    data: dict[str, Any]
    answer: Answer | None = None

    def record_output(self, step_id: str, output: Any) -> None:
        self.data["steps"][step_id] = {"output": output}


class Runnable(Protocol):
    """A compiled step."""

    id: str
    kind: str

    async def run(self, context: RunContext) -> Any:
        """Do the step's work and return its output (recorded under steps.<id>.output)."""
        ...
