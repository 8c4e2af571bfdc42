"""deploy/ as data for the tests beside it: the Kustomize base's resources, the compose
file, and what hookline's services read (settings, commands, probe routes)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from shared.cli import SERVICES, build_parser
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "k8s" / "base"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
SETTING_NAMES = frozenset(f"HOOKLINE_{name.upper()}" for name in Settings.__struct_fields__)
# Read by every service and command (shared/settings.py load_settings).
REQUIRED = ("HOOKLINE_AMQP_URL", "HOOKLINE_DATABASE_URL")

Resource = dict[str, Any]


def kustomization(base: Path = BASE) -> Resource:
    loaded: Resource = yaml.safe_load((base / "kustomization.yaml").read_text())
    return loaded


def base_resources(base: Path = BASE) -> list[tuple[str, Resource]]:
    """Every document of every file the kustomization lists, with the file's name."""
    found = []
    for name in kustomization(base)["resources"]:
        path = base / name
        assert path.is_file(), f"kustomization.yaml lists {name}, which is not a file in {base}"
        for document in yaml.safe_load_all(path.read_text()):
            assert isinstance(document, dict), f"{name}: a document that is not a mapping"
            found.append((name, document))
    return found


def of_kind(resources: list[tuple[str, Resource]], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for _, r in resources if r["kind"] == kind}


def pod_spec(resource: Resource) -> Resource:
    spec: Resource = resource["spec"]["template"]["spec"]
    return spec


def containers(resource: Resource) -> Iterator[Resource]:
    yield from pod_spec(resource)["containers"]


def compose() -> Resource:
    loaded: Resource = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


class _Parsed(Exception):
    """Raised instead of running a service once its command line parsed."""


def check_command(command: list[str]) -> None:
    """Fail unless `hookline COMMAND...` parses as the console script would take it."""
    try:
        if command[0] in SERVICES:
            # `hookline <service>` execs `python -m <service>`: that module's own parser.
            module = importlib.import_module(f"{command[0]}.__main__")
            original = argparse.ArgumentParser.parse_args

            def parse_then_stop(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
                original(self, *args, **kwargs)
                raise _Parsed

            with (
                mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop),
                pytest.raises(_Parsed),
            ):
                module.main(command[1:])
        else:
            assert hasattr(build_parser().parse_args(command), "run"), f"hookline {command}: no command"
    except SystemExit:
        pytest.fail(f"`hookline {' '.join(command)}` is not a command line hookline takes")
