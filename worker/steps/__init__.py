"""Workflow step kinds, one module each; `compile_step` turns a spec into a runnable step."""

from __future__ import annotations

from shared.spec.steps import ConditionStep, HttpStep, MapStep, PythonStep, RespondStep, SqlStep, Step
from worker.steps.base import Runnable
from worker.steps.condition import ConditionRunner
from worker.steps.http import HttpRunner
from worker.steps.map import MapRunner
from worker.steps.python import PythonRunner
from worker.steps.respond import RespondRunner
from worker.steps.sql import SqlRunner


def compile_step(step: Step) -> Runnable:
    """The runnable form of one step (expressions compiled once per trigger version)."""
    if isinstance(step, MapStep):
        return MapRunner(step)
    if isinstance(step, HttpStep):
        return HttpRunner(step)
    if isinstance(step, SqlStep):
        return SqlRunner(step)
    if isinstance(step, ConditionStep):
        return ConditionRunner(step, compile_step)
    if isinstance(step, RespondStep):
        return RespondRunner(step)
    if isinstance(step, PythonStep):
        return PythonRunner(step)
    raise TypeError(f"no runner for step kind {type(step).__name__}")
