"""Which connections steps name, checked at apply against the workspace's stored connections.

Several files may share a workspace, each declaring the connections its triggers use, and
the registry keeps them all (shared/db/connections.py): a step may name a connection another
file declared, and a file may not change a connection's type under triggers it does not hold.
"""

from __future__ import annotations

from collections.abc import Iterator

from shared.errors import SpecError
from shared.spec.connections import Connection, HttpConnection, PostgresConnection
from shared.spec.model import Trigger
from shared.spec.steps import ConditionStep, HttpStep, SqlStep, Step


def check_connection_uses(
    workspace: str,
    connections: dict[str, Connection],
    triggers: list[Trigger],
    stored: dict[str, Connection],
    stored_triggers: list[Trigger],
) -> None:
    """At apply, against the workspace's connections as they will be (stored, the document's winning).

    Steps of `triggers` must name one of those, of their type. A connection `stored` may
    change type only if no trigger of `stored_triggers` that the document does not replace
    uses it as the old type: those were checked against it, and would fail at run time.
    """
    merged = {**stored, **connections}
    for trigger in triggers:
        for here, kind, name, wanted in _connection_uses(trigger):
            if name not in merged:
                known = ", ".join(sorted(merged)) or "none"
                raise SpecError(
                    f"workspace {workspace}, {here}, field {kind}.connection: "
                    f"unknown connection {name!r} (the workspace has: {known})"
                )
            connection_type(f"workspace {workspace}, {here}", kind, name, wanted, merged)
    replaced = {trigger.name for trigger in triggers}
    for name, connection in connections.items():
        old = stored.get(name)
        if old is None or _type(old) == _type(connection):
            continue
        users = sorted(
            {t.name for t in stored_triggers if t.name not in replaced and _uses_as(t, name, type(old))}
        )
        if users:
            step = "sql" if isinstance(old, PostgresConnection) else "http"
            which = f"triggers {', '.join(users)} of the workspace use it in {step} steps"
            if len(users) == 1:
                which = f"trigger {users[0]} of the workspace uses it in an {step} step"
            raise SpecError(
                f"workspace {workspace}, connection {name}, field type: "
                f"cannot change from {_type(old)} to {_type(connection)}: {which}"
            )


def _connection_uses(trigger: Trigger) -> Iterator[tuple[str, str, str, type[Connection]]]:
    """(place, step kind, connection name, the type it needs) of every step naming a connection."""
    for here, step in _placed_steps(trigger.workflow, f"trigger {trigger.name}"):
        if isinstance(step, HttpStep) and step.http.connection is not None:
            yield here, "http", step.http.connection, HttpConnection
        elif isinstance(step, SqlStep):
            yield here, "sql", step.sql.connection, PostgresConnection


def _placed_steps(steps: list[Step], where: str) -> Iterator[tuple[str, Step]]:
    """Every step with its place as messages name it (`trigger T, step C, then, step S`)."""
    for step in steps:
        here = f"{where}, step {step.id}"
        yield here, step
        if isinstance(step, ConditionStep):
            yield from _placed_steps(step.condition.then, f"{here}, then")
            yield from _placed_steps(step.condition.else_, f"{here}, else")


def _uses_as(trigger: Trigger, name: str, kind: type[Connection]) -> bool:
    return any(used == name and wanted is kind for _, _, used, wanted in _connection_uses(trigger))


def connection_type(
    where: str, kind: str, name: str, wanted: type[Connection], connections: dict[str, Connection]
) -> None:
    """A connection the step names must be of its type; one not in `connections` waits for apply."""
    connection = connections.get(name)
    if connection is not None and not isinstance(connection, wanted):
        raise SpecError(
            f"{where}, field {kind}.connection: connection {name!r} is of type {_type(connection)}; "
            f"an {kind} step needs one of type {_type(wanted)}"
        )


def _type(connection: Connection | type[Connection]) -> str:
    return str(connection.__struct_config__.tag)  # the `type:` written in the file
