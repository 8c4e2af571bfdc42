"""README: `make run` (`hookline up`) "applies the triggers in `examples/`, starts the
dispatcher, two workers and the ingress"."""

from __future__ import annotations

from pathlib import Path

from shared.cli import build_parser


def test_up_runs_two_workers_and_applies_the_examples_folder_by_default() -> None:
    ns = build_parser().parse_args(["up"])
    assert (ns.workers, ns.examples) == (2, Path("examples"))
