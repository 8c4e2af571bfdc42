"""`python` steps: found through the `hookline.steps` entry points, configured, run on their input."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

import worker.steps.python
from shared.spec.plugins import GROUP, installed, load_plugin
from tests.workflow_runs import invocation, workflow_of
from worker.steps.plugins.csv_rows import CsvRows

CSV = """
- id: rows
  python:
    step: csv
    config: {delimiter: ";", header: HEADER, max_rows: 2}
    input: "{{ request.body.text }}"
"""


def test_the_csv_step_is_registered_in_pyproject() -> None:
    assert installed()["csv"].group == GROUP
    assert load_plugin("csv") is CsvRows


async def test_csv_text_becomes_objects_keyed_by_the_header() -> None:
    workflow = workflow_of(CSV.replace("HEADER", "true"))
    outcome = await workflow.run(invocation({"text": "sku;qty\nA-100;3\nB-200;0\n"}), 1)
    assert outcome.ok, outcome.error
    assert outcome.output == [{"sku": "A-100", "qty": "3"}, {"sku": "B-200", "qty": "0"}]
    assert outcome.steps[0]["kind"] == "python"


async def test_without_a_header_rows_are_lists() -> None:
    outcome = await workflow_of(CSV.replace("HEADER", "false")).run(invocation({"text": "a;b\nc;d"}), 1)
    assert outcome.output == [["a", "b"], ["c", "d"]]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"text": "h\n1\n2\n3\n"}, "step rows (python): csv: more than 2 rows (max_rows)"),
        ({"text": ["not", "text"]}, "step rows (python): csv: the input must be text, not list"),
        ({"text": 'a;"b\n'}, "step rows (python): csv: line 1: unexpected end of data"),
    ],
)
async def test_csv_failures_name_the_step(body: Any, error: str) -> None:
    outcome = await workflow_of(CSV.replace("HEADER", "true")).run(invocation(body), 1)
    assert outcome.error == error


async def test_a_big_csv_text_is_parsed_without_holding_the_event_loop() -> None:
    """Other runs of the worker go on while a large export is parsed."""
    text = "sku;qty;note\n" + "".join(f"S-{n};{n};{'x' * 40}\n" for n in range(60_000))
    workflow = workflow_of(CSV.replace("HEADER", "true").replace("max_rows: 2", "max_rows: 100000"))
    ticks = 0
    parsing = True

    async def other_run() -> None:
        nonlocal ticks
        while parsing:
            ticks += 1
            await asyncio.sleep(0.001)

    ticker = asyncio.create_task(other_run())
    await asyncio.sleep(0)  # the ticker has started
    started = ticks
    outcome = await workflow.run(invocation({"text": text}), 1)
    parsing = False
    await ticker
    assert outcome.ok, outcome.error
    assert len(outcome.output) == 60_000
    assert ticks - started >= 3  # held, it would have ticked at most once


class Opaque:
    """A plugin whose output no record can hold."""

    class Config(msgspec.Struct):
        pass

    def __init__(self, config: Any) -> None:
        pass

    async def run(self, value: Any) -> Any:
        return object()


async def test_an_output_a_record_cannot_hold_fails_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker.steps.python, "load_plugin", lambda name: Opaque)
    workflow = workflow_of("- id: p\n  python: {step: csv}")
    outcome = await workflow.run(invocation(), 1)
    assert outcome.error == (
        "step p (python): python step 'csv' returned a value a record cannot hold: "
        "Encoding objects of type object is unsupported"
    )
