"""`map`: build a value from expressions; the value is the step's output."""

from __future__ import annotations

from typing import Any

from shared.expressions import compile_template, render
from shared.spec.steps import MapStep
from worker.steps.base import RunContext


class MapRunner:
    """Renders its template against the run's data."""

    kind = "map"
    timeout: float | None = None
    effects = False
    suspends = False

    def __init__(self, step: MapStep) -> None:
        self.id = step.id
        self._template = compile_template(step.map)

    async def run(self, context: RunContext) -> Any:
        return render(self._template, context.data)
