"""`python`: run a step class an installed package registered under `hookline.steps`.

The class is found and its config decoded once per trigger version; each run hands it the
rendered `input` only. Its output must be something a record can hold (msgspec-encodable).
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.errors import WorkflowError
from shared.expressions import compile_template, render
from shared.spec.plugins import PluginConfigInvalid, configure, load_plugin
from shared.spec.steps import PythonStep
from worker.steps.base import RunContext, StepFailed


class PythonRunner:
    """Holds one configured plugin instance, shared by every run of the trigger version."""

    kind = "python"
    suspends = True

    def __init__(self, step: PythonStep) -> None:
        self.id = step.id
        self.timeout: float | None = step.python.timeout
        self._name = step.python.step
        try:
            self._plugin = configure(load_plugin(step.python.step), step.python.config)
        except PluginConfigInvalid as exc:
            raise WorkflowError(f"python step {self._name!r}, {exc.field}: {exc.reason}") from None
        except ValueError as exc:  # not installed on this worker
            raise WorkflowError(str(exc)) from None
        self._input = compile_template(step.python.input)
        self.retry = step.retry
        declared = step.python.effects
        self.effects = bool(getattr(self._plugin, "effects", False)) if declared is None else declared

    async def run(self, context: RunContext) -> Any:
        output = await self._plugin.run(render(self._input, context.data))
        try:
            return msgspec.to_builtins(output)
        except (TypeError, msgspec.EncodeError) as exc:
            raise StepFailed(
                f"python step {self._name!r} returned a value a record cannot hold: {exc}"
            ) from None
