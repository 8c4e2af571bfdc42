"""`python` steps: classes installed packages register under the `hookline.steps` entry points.

A package declares, in its pyproject:

    [project.entry-points."hookline.steps"]
    csv = "mypackage.steps:CsvRows"

and the class follows `StepPlugin`: a `Config` msgspec Struct (the step's `config:`,
validated when the trigger file is applied), `__init__(config)`, and `async run(value)`
taking the rendered `input:` and returning a msgspec-encodable value. One instance serves
every run of a trigger version, concurrently: keep it stateless. The plugin sees only its
config and its input, never the run's other data or the connections' secrets.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Protocol, cast

import msgspec

GROUP = "hookline.steps"


class StepPlugin(Protocol):
    """What a `python` step class provides."""

    Config: ClassVar[type[msgspec.Struct]]

    def __init__(self, config: Any) -> None: ...

    async def run(self, value: Any) -> Any:
        """Do the step's work on the rendered `input` value; the result is the step's output."""
        ...


@functools.cache
def installed() -> dict[str, EntryPoint]:
    """Every registered python step by name (read once per process)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_plugin(name: str) -> type[StepPlugin]:
    """The class registered as `name`; ValueError says what is installed instead."""
    entry = installed().get(name)
    if entry is None:
        known = ", ".join(sorted(installed())) or "none"
        raise ValueError(f"unknown python step {name!r}; installed: {known}")
    plugin = entry.load()
    config = getattr(plugin, "Config", None)
    if not (isinstance(config, type) and issubclass(config, msgspec.Struct)) or not callable(
        getattr(plugin, "run", None)
    ):
        raise ValueError(f"python step {name!r} ({entry.value}) has no `Config` Struct or no `run` method")
    return cast("type[StepPlugin]", plugin)


class PluginConfigInvalid(ValueError):
    """Raised when a python step's `config` does not fit its class's Config Struct."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def configure(plugin: type[StepPlugin], config: dict[str, Any]) -> StepPlugin:
    """An instance of `plugin` with its config decoded (PluginConfigInvalid names the field)."""
    try:
        decoded = msgspec.convert(config, plugin.Config)
    except msgspec.ValidationError as exc:
        reason, _, path = str(exc).partition(" - at `$")
        raise PluginConfigInvalid("config" + path.rstrip("`"), reason) from None
    return plugin(decoded)
