"""Settings: read once from HOOKLINE_* variables (or the stack `hookline up` recorded)."""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import msgspec

from shared.errors import ConfigError

STATE_DIR = Path(".hookline")
STACK_FILE = "stack.json"
SECRETS_KEY_FILE = "secrets.key"


class Stack(msgspec.Struct, kw_only=True):
    """What `hookline up` records so a second terminal reaches the same stack (no secret)."""

    amqp_url: str
    database_url: str
    port: int
    amqp_prefix: str = "hookline"
    # The folder of the local RabbitMQ cluster it started (`--rabbitmq-nodes N`), if any:
    # `hookline status` asks its nodes which queues each leads.
    rabbitmq_cluster: str | None = None


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
    # An unordered trigger's own queue, unless the trigger sets `max_queued` (docs/triggers.md).
    trigger_queue_max_length: int = 10_000
    # A flow-control slot (`concurrency`) is leased for this long and renewed while its run
    # lasts: a killed worker's slots free themselves after it.
    flow_lease_seconds: float = 30.0
    delivery_limit: int = 10
    # The worker's watchdog settles a delivery still unsettled this long after its run's
    # workflow_timeout, and never lets a run hold one longer than `watchdog_limit` (keep it
    # below the broker's consumer_timeout, 1 h in deploy/; see docs/delivery.md).
    watchdog_margin: float = 30.0
    watchdog_limit: float = 3000.0
    heartbeat: int = 15
    metrics_port: int | None = None  # worker and dispatcher probes; None: off, 0: a free port
    metrics_token: str | None = None  # when set, /metrics answers only `Authorization: Bearer <it>`
    console_session_seconds: int = 8 * 3600  # a console sign-in lasts this long (then: sign in again)
    secure_cookies: bool = False  # console cookies `Secure` (also when a trusted proxy says https)
    # Comma-separated addresses or networks whose X-Forwarded-For/-Proto the ingress believes
    # (a TLS-terminating proxy in front of it); empty: none, the connection is what it is.
    trusted_proxies: str = ""
    retention_days: float = 30.0  # executions (unless a trigger sets `retention`), samples, rejected calls
    retention_max_days: float = 365.0  # the longest `retention` a trigger may set (tenants' cap)
    retention_batch: int = 1000  # rows per delete statement
    retention_every: float = 300.0  # seconds between sweeps (the dispatcher holding the lock runs them)
    log_level: str = "INFO"
    log_json: bool = True
    # Bounds of what a caller may send the ingress (ingress/limits.py, ingress/parse.py).
    max_body_bytes: int = 10_485_760  # the cap on every trigger's body.max_bytes, checked at apply
    max_header_bytes: int = 65_536  # request line and headers together; above it: 431
    max_header_count: int = 100  # above it: 431
    header_timeout: float = 10.0  # seconds from a connection's start (or its last answer) to its headers
    limit_concurrency: int = 1000  # connections and calls in flight per process; above it: 503
    max_json_depth: int = 128  # nesting of a JSON body; deeper: 400
    # `${env:NAME}` a definition made with a workspace token may resolve: "demo=A,B;beta=C".
    workspace_env: str = ""
    # The key of workspace secrets at rest (`${secret:NAME}`): 32 random bytes, base64url.
    secrets_key: str | None = None

    # Networks every workspace's http steps may reach although they are not public, comma
    # separated (`10.1.0.0/16,127.0.0.1:8099`; shared/spec/egress.py reads the entries).
    egress_allow: str = ""

    def __post_init__(self) -> None:
        check_amqp_url(self.amqp_url)
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
    def allowed_env(self) -> dict[str, frozenset[str]]:
        """HOOKLINE_WORKSPACE_ENV as {workspace: names}."""
        return parse_workspace_env(self.workspace_env)

    @property
    def amqp_urls(self) -> tuple[str, ...]:
        """HOOKLINE_AMQP_URL as one URL per broker node (comma separated, one or more)."""
        return split_amqp_urls(self.amqp_url)

    @property
    def public_url(self) -> str:
        """Base URL of the ingress as callers see it."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"


def split_amqp_urls(value: str) -> tuple[str, ...]:
    """The nodes' URLs of a comma-separated HOOKLINE_AMQP_URL; ConfigError names no password.

    A comma inside a password must be percent-encoded (`%2C`), as in any URL.
    """
    urls = tuple(part.strip() for part in value.split(","))
    for position, url in enumerate(urls, start=1):
        if not url.startswith(("amqp://", "amqps://")):
            raise ConfigError(
                f"HOOKLINE_AMQP_URL: URL {position} of {len(urls)} is not an amqp:// or amqps:// URL"
            )
    return urls


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# What aiormq reads from an amqps:// URL's query to build its TLS context
# (aiormq/connection.py, Connection.__init__ and SSLContextProvider): verification and the
# host name check are on unless `no_verify_ssl` turns both off.
TLS_FILES = ("cafile", "capath", "certfile", "keyfile")
TLS_PARAMETERS = (*TLS_FILES, "cadata")


def check_amqp_url(setting: str) -> None:
    """Refuse an AMQP URL the services would use without checking the broker, or not at all.

    ValueError says why; it never repeats the URL (it may hold a password). Each of several
    comma-separated URLs (broker nodes) is checked. The TLS files are loaded as aiormq will
    load them, so a missing or unreadable one stops the service at its start, where the
    connect loop would retry it forever.
    """
    urls = split_amqp_urls(setting)  # each one amqp:// or amqps://
    for number, url in enumerate(urls, 1):
        where = "HOOKLINE_AMQP_URL" + (f" (URL {number} of {len(urls)})" if len(urls) > 1 else "")
        parts = urlsplit(url)
        query = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
        if query.get("no_verify_ssl", "0") != "0":
            raise ValueError(
                f"{where}: no_verify_ssl turns off the check of the broker's certificate, "
                "which hookline refuses; name the CA that signed it with ?cafile="
            )
        given = [name for name in TLS_PARAMETERS if name in query]
        if parts.scheme == "amqp" and given:
            raise ValueError(
                f"{where}: {', '.join(given)} on an amqp:// URL, which is plain TCP; use amqps://"
            )
        if parts.scheme == "amqps":
            _check_tls_files(where, query)


def _check_tls_files(where: str, query: dict[str, str]) -> None:
    """Build the TLS context aiormq will build from `query`; ValueError if it cannot be."""
    if "keyfile" in query and "certfile" not in query:
        raise ValueError(f"{where}: keyfile without certfile (the client certificate it belongs to)")
    for name in TLS_FILES:
        if name in query and not os.access(query[name], os.R_OK):
            raise ValueError(f"{where}: {name} {query[name]} cannot be read")
    try:
        cadata = base64.b64decode(query["cadata"], validate=True) if query.get("cadata") else None
        context = ssl.create_default_context(
            cafile=query.get("cafile"), capath=query.get("capath"), cadata=cadata
        )
        if "certfile" in query:
            context.load_cert_chain(query["certfile"], query.get("keyfile"), password=_no_passphrase)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError; a bad base64 a ValueError
        raise ValueError(f"{where}: the TLS files given cannot be used ({exc})") from None


def _no_passphrase() -> str:
    # aiormq passes no passphrase: an encrypted key would make OpenSSL ask for one on the terminal.
    raise ValueError("keyfile is encrypted; aiormq cannot be given its passphrase")


def parse_workspace_env(setting: str) -> dict[str, frozenset[str]]:
    """`demo=A,B;beta=C` as {workspace: names}; ConfigError when malformed (the value is not echoed)."""
    allowed: dict[str, frozenset[str]] = {}
    for entry in filter(None, (part.strip() for part in setting.split(";"))):
        workspace, equals, names = entry.partition("=")
        listed = frozenset(n.strip() for n in names.split(",") if n.strip())
        if not equals or not workspace.strip() or not all(_ENV_NAME.match(n) for n in listed):
            raise ConfigError("HOOKLINE_WORKSPACE_ENV: expected workspace=NAME,NAME;workspace=NAME")
        allowed[workspace.strip()] = allowed.get(workspace.strip(), frozenset()) | listed
    return allowed


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


def secrets_key_file(state_dir: Path = STATE_DIR) -> str:
    """`hookline up`'s HOOKLINE_SECRETS_KEY: made once, kept in `<state>/secrets.key` (owner-only).

    Unlike the admin token (new each run, held in memory), it must survive restarts: the
    secrets it encrypts live on in the stack's PostgreSQL data, and a new key would leave
    every one of them unreadable. A deployment sets HOOKLINE_SECRETS_KEY from its own store.
    """
    path = state_dir / SECRETS_KEY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


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
        key_file = state_dir / SECRETS_KEY_FILE
        if "secrets_key" not in values and key_file.exists():
            values["secrets_key"] = key_file.read_text().strip()  # the running stack's (hookline secrets)
    values.update({k: v for k, v in overrides.items() if v is not None})
    for required in ("database_url", "amqp_url"):
        if required not in values:
            raise ConfigError(
                f"HOOKLINE_{required.upper()} is not set and no stack runs here: "
                "start one with `make run` or set the variable"
            )
    if isinstance(values["database_url"], str) and not env.get("PGTARGETSESSIONATTRS"):
        values["database_url"] = writable_database_url(values["database_url"])
    try:
        # strict=False: msgspec reads "9000" as an int and "false" as a bool, by the field's type.
        settings = msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_named(str(exc))) from None
    settings.allowed_env  # noqa: B018 (raises ConfigError now rather than at the first definition)
    settings.amqp_urls  # noqa: B018 (a malformed list of nodes stops the start here)
    return settings


def writable_database_url(url: str) -> str:
    """`url` reaching only a server that takes writes when it lists several hosts.

    asyncpg's default, `target_session_attrs=any`, takes the first host that answers: a
    standby listed first (or an old primary back as one) would refuse every record. A URL
    that says `target_session_attrs` itself is left as it is, and so is a single host.
    """
    parts = urlsplit(url)
    if "," not in parts.netloc.rpartition("@")[2] or "target_session_attrs" in parse_qs(parts.query):
        return url
    query = "&".join(filter(None, [parts.query, "target_session_attrs=read-write"]))
    return urlunsplit(parts._replace(query=query))


_FIELD = re.compile(r" - at `\$\.(\w+)`$")


def _named(message: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.port`" as "HOOKLINE_PORT: expected `int`, got `str`".

    The value is left out: some settings are secrets or URLs with a password in them.
    """
    match = _FIELD.search(message)
    if match is None:
        return message if message.startswith("HOOKLINE_") else f"invalid setting: {message}"
    return f"HOOKLINE_{match[1].upper()}: {message[: match.start()].lower()}"
