"""Settings: read once from HOOKLINE_* variables (or the stack `hookline up` recorded)."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path

import msgspec

from shared.errors import ConfigError

STATE_DIR = Path(".hookline")
STACK_FILE = "stack.json"


class Stack(msgspec.Struct, kw_only=True):
    """What `hookline up` records so a second terminal reaches the same stack (no secret)."""

    amqp_url: str
    database_url: str
    port: int
    amqp_prefix: str = "hookline"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every setting of every service; built in main() and passed down."""

    database_url: str
    amqp_url: str
    amqp_prefix: str = "hookline"
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str | None = None
    ingress_workers: int = 1
    worker_concurrency: int = 32
    step_output_limit: int = 65536  # bytes of a step's output kept in its record
    # Bytes of JSON an effect step's checkpoint may hold; a larger output is not kept, so a
    # retry runs that step again (with the same idempotency key).
    checkpoint_limit: int = 1_048_576
    publish_timeout: float = 5.0
    retry_after: int = 5
    work_queue_max_length: int = 1_000_000
    delivery_limit: int = 10
    heartbeat: int = 15
    metrics_port: int | None = None  # worker and dispatcher probes; None: off, 0: a free port
    metrics_token: str | None = None  # when set, /metrics answers only `Authorization: Bearer <it>`
    console_session_seconds: int = 8 * 3600  # a console sign-in lasts this long (then: sign in again)
    secure_cookies: bool = False  # console cookies `Secure` (also when a trusted proxy says https)
    # Comma-separated addresses or networks whose X-Forwarded-For/-Proto the ingress believes
    # (a TLS-terminating proxy in front of it); empty: none, the connection is what it is.
    trusted_proxies: str = ""
    log_level: str = "INFO"
    log_json: bool = True

    def __post_init__(self) -> None:
        for proxy in self.trusted_proxy_list:
            if proxy != "*":
                try:
                    ipaddress.ip_network(proxy, strict=False)
                except ValueError:
                    raise ValueError(
                        f"HOOKLINE_TRUSTED_PROXIES: {proxy!r} is not an address or a network"
                    ) from None

    @property
    def trusted_proxy_list(self) -> list[str]:
        """`trusted_proxies` as a list (empty: no proxy is trusted)."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def public_url(self) -> str:
        """Base URL of the ingress as callers see it."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"


def read_stack(state_dir: Path = STATE_DIR) -> Stack | None:
    """The stack a running `hookline up` recorded in this folder, if any."""
    path = state_dir / STACK_FILE
    try:
        return msgspec.json.decode(path.read_bytes(), type=Stack)
    except FileNotFoundError:
        return None
    except (msgspec.DecodeError, OSError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}); delete it and run `make run` again") from None


def write_stack(stack: Stack, state_dir: Path = STATE_DIR) -> None:
    """Record the running stack (owner-readable: its URLs say where the servers are)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STACK_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(msgspec.json.encode(stack))


def load_settings(
    environ: Mapping[str, str] | None = None, state_dir: Path = STATE_DIR, **overrides: object
) -> Settings:
    """Settings from HOOKLINE_* variables, falling back to the stack `hookline up` recorded."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in Settings.__struct_fields__:
        raw = env.get(f"HOOKLINE_{field.upper()}")
        if raw is None or raw == "":
            continue
        values[field] = raw
    stack = read_stack(state_dir) if ("amqp_url" not in values or "database_url" not in values) else None
    if stack is not None:
        values.setdefault("amqp_url", stack.amqp_url)
        values.setdefault("database_url", stack.database_url)
        values.setdefault("port", stack.port)
        values.setdefault("amqp_prefix", stack.amqp_prefix)
    values.update({k: v for k, v in overrides.items() if v is not None})
    for required in ("database_url", "amqp_url"):
        if required not in values:
            raise ConfigError(
                f"HOOKLINE_{required.upper()} is not set and no stack runs here: "
                "start one with `make run` or set the variable"
            )
    try:
        # strict=False: msgspec reads "9000" as an int and "false" as a bool, by the field's type.
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_named(str(exc))) from None


_FIELD = re.compile(r" - at `\$\.(\w+)`$")


def _named(message: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.port`" as "HOOKLINE_PORT: expected `int`, got `str`".

    The value is left out: some settings are secrets or URLs with a password in them.
    """
    match = _FIELD.search(message)
    if match is None:
        return f"invalid setting: {message}"
    return f"HOOKLINE_{match[1].upper()}: {message[: match.start()].lower()}"
