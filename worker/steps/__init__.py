"""Workflow step kinds, one module each; `compile_step` turns a spec into a runnable step."""

from __future__ import annotations

from shared.spec.model import MapStep, RespondStep, Step
from worker.steps.base import Runnable
from worker.steps.map import MapRunner
from worker.steps.respond import RespondRunner


def compile_step(step: Step) -> Runnable:
    """The runnable form of one step (expressions compiled once per trigger version)."""
    if isinstance(step, MapStep):
        return MapRunner(step)
    if isinstance(step, RespondStep):
        return RespondRunner(step)
    raise TypeError(f"no runner for step kind {type(step).__name__}")
