"""Read trigger files (YAML or JSON, one or many documents) into Workspace Structs.

Steps are written with their kind as the key; `normalise_steps` rewrites each one to carry
`kind` so that msgspec's tagged union can decode it. Decoding errors come back with a JSON
path; `describe_path` turns it into "trigger create-customer, step create, field url".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from shared.errors import SpecError
from shared.signatures.presets import scheme_from_spec
from shared.spec.base import NAME_PATTERN
from shared.spec.checks import check_workspace
from shared.spec.connections import Connection
from shared.spec.model import HmacAuth, Workspace
from shared.spec.types import dec_hook

STEP_KINDS = ("map", "respond", "http", "sql", "condition", "python")
_NAME = re.compile(NAME_PATTERN)


def load_file(path: Path) -> list[Workspace]:
    """Load every document of a YAML or JSON file; SpecError names the file and the place."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    return load_text(text, source=str(path))


def load_text(text: str, source: str = "<input>") -> list[Workspace]:
    """Load every document of a YAML (or JSON, a subset of YAML) text."""
    try:
        documents = [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML or JSON: {_one_line(exc)}") from None
    except RecursionError:
        raise SpecError(f"{source}: nested too deeply") from None
    if not documents:
        raise SpecError(f"{source}: no documents")
    return [
        load_document(doc, f"{source}" + (f", document {i + 1}" if len(documents) > 1 else ""))
        for i, doc in enumerate(documents)
    ]


def load_document(document: object, source: str = "<input>") -> Workspace:
    """Validate one decoded document into a Workspace."""
    if not isinstance(document, dict):
        raise SpecError(f"{source}: a document must be a mapping with `workspace` and `triggers`")
    normalised = _normalise(document, source)
    _decode_connections(normalised.get("connections"), source)
    try:
        workspace = msgspec.convert(normalised, Workspace, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        raise SpecError(f"{source}: {describe_error(str(exc), normalised)}") from None
    for trigger in workspace.triggers:
        if isinstance(trigger.auth, HmacAuth):
            try:
                scheme_from_spec(trigger.auth)
            except ValueError as exc:
                raise SpecError(f"{source}: trigger {trigger.name}, field auth: {exc}") from None
    try:
        check_workspace(workspace)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
    return workspace


def _decode_connections(connections: object, source: str) -> None:
    # One by one: msgspec's error path hides dict keys (`$.connections[...]`), people need the name.
    if not isinstance(connections, dict):
        return
    for name, connection in connections.items():
        if not (isinstance(name, str) and _NAME.fullmatch(name)):
            raise SpecError(
                f"{source}: connection {name!r}: a connection name is lower-case letters, digits, "
                "'-' and '_', at most 63 characters, starting with a letter or a digit"
            )
        try:
            msgspec.convert(connection, Connection, dec_hook=dec_hook)
        except msgspec.ValidationError as exc:
            described = describe_error(str(exc), connection if isinstance(connection, dict) else {})
            separator = ", " if described.startswith("field ") else ": "
            raise SpecError(f"{source}: connection {name}{separator}{described}") from None


def _normalise(document: dict[str, Any], source: str) -> dict[str, Any]:
    triggers = document.get("triggers")
    if not isinstance(triggers, list):
        return document
    out = dict(document)
    out["triggers"] = [_normalise_trigger(t, source) if isinstance(t, dict) else t for t in triggers]
    return out


def _normalise_trigger(trigger: dict[str, Any], source: str) -> dict[str, Any]:
    where = f"{source}: trigger {trigger.get('name', '?')}"
    out = dict(trigger)
    if isinstance(trigger.get("workflow"), list):
        out["workflow"] = normalise_steps(trigger["workflow"], where)
    if isinstance(trigger.get("on_error"), list):
        out["on_error"] = normalise_steps(trigger["on_error"], f"{where}, on_error", "on_error")
    return out


def normalise_steps(steps: list[Any], where: str, prefix: str = "") -> list[Any]:
    """Give each step `kind` (the one key naming its kind) and an `id` if it has none.

    A missing id is `<kind>_<position>`, or inside a condition `<condition>_<branch>_<position>`,
    so ids stay unique across branches.
    """
    out: list[Any] = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            raise SpecError(f"{where}, step {index + 1}: a step must be a mapping")
        kinds = [k for k in step if k in STEP_KINDS]
        if len(kinds) != 1:
            others = sorted(k for k in step if k != "id")
            label = step.get("id", index + 1)
            if not kinds:
                raise SpecError(
                    f"{where}, step {label}: unknown step kind (keys: {', '.join(others)}); "
                    f"expected one of {', '.join(STEP_KINDS)}"
                )
            raise SpecError(f"{where}, step {label}: one step has several kinds: {', '.join(kinds)}")
        kind = kinds[0]
        body = {**step, "kind": kind}
        retry = body.get("retry")
        if isinstance(retry, dict) and True in retry:
            # YAML 1.1 (PyYAML) reads a bare `on` key as true: `retry: {on: [5xx]}` meant "on".
            body["retry"] = {("on" if key is True else key): value for key, value in retry.items()}
        body.setdefault("id", f"{prefix or kind}_{index + 1}")
        if kind == "condition" and isinstance(step[kind], dict):
            body[kind] = _normalise_branches(step[kind], f"{where}, step {body['id']}", str(body["id"]))
        out.append(body)
    return out


def _normalise_branches(condition: dict[str, Any], where: str, condition_id: str) -> dict[str, Any]:
    out = dict(condition)
    for branch in ("then", "else"):
        if isinstance(out.get(branch), list):
            out[branch] = normalise_steps(out[branch], f"{where}, {branch}", f"{condition_id}_{branch}")
    return out


_PATH = re.compile(r" - at `(\$[^`]*)`$")
_SEGMENT = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\[('[^']*')\]")


def describe_error(message: str, document: dict[str, Any]) -> str:
    """Rewrite msgspec's `... - at $.triggers[0].workflow[1].respond.status` for people."""
    match = _PATH.search(message)
    if not match:
        return message
    text = message[: match.start()]
    parts: list[str] = []
    node: Any = document
    fields: list[str] = []
    for name, index, quoted in _SEGMENT.findall(match[1][1:]):
        key: str | int = int(index) if index else (quoted.strip("'") if quoted else name)
        if isinstance(node, list) and isinstance(key, int) and key < len(node):
            item = node[key]
            if fields and fields[-1] == "triggers" and isinstance(item, dict):
                fields.pop()
                parts.append(f"trigger {item.get('name', key)}")
            elif fields and fields[-1] in ("workflow", "then", "else", "on_error") and isinstance(item, dict):
                container = fields.pop()
                if container == "on_error":
                    parts.append(container)
                elif container != "workflow":
                    fields.pop()  # the `condition` around `then` / `else`
                    parts.append(container)
                parts.append(f"step {item.get('id', key + 1)}")
            else:
                fields.append(f"[{key}]")
            node = item
            continue
        fields.append(str(key))
        node = node.get(key) if isinstance(node, dict) else None
    if fields:
        parts.append("field " + ".".join(fields).replace(".[", "["))
    return ", ".join(parts) + ": " + text if parts else text


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
