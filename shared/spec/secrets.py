"""Secrets in trigger files: `${env:NAME}` and `${secret:NAME}` references, Basic passwords hashed at rest.

A trigger file never holds a secret a registry would store in plain text: HMAC secrets and
connection credentials are references resolved by the service that uses them; a Basic
password (literal or reference) is replaced by its scrypt hash when the file is applied.

`${env:NAME}` reads the resolving process's environment, which every workspace shares: what
the operator writes (`hookline apply`, the admin token) may name any variable, a definition
made with a workspace token only the names the operator allowed that workspace
(HOOKLINE_WORKSPACE_ENV), and a forbidden name is answered exactly as an unset one.
hookline's own settings (`HOOKLINE_<SETTING>`: the database URL, the admin token...) are
never resolved; other `HOOKLINE_` names (`HOOKLINE_GITHUB_SECRET`) are the file's to use.
`${secret:NAME}` is a secret of the definition's own workspace (shared/db/secrets.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from shared.errors import SpecError
from shared.settings import Settings
from shared.spec.model import BasicAuth, HmacAuth, Trigger

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
REFERENCE = re.compile(rf"^\$\{{(?:env|secret):({_NAME})\}}$")
_EMBEDDED = re.compile(rf"\$\{{(env|secret):({_NAME})\}}")
# shared/settings.py reads HOOKLINE_<FIELD> of each Settings field; compared upper-cased, as
# Windows names ignore case. Read from the Struct, so a new setting is reserved with it.
_OWN_SETTINGS = frozenset(f"HOOKLINE_{field.upper()}" for field in Settings.__struct_fields__)

# scrypt cost: ~50 ms on this class of machine, once per apply and once per new pair at
# the ingress (verified pairs are cached there).
_N, _R, _P = 2**14, 8, 1
_DIGEST_BYTES = 32

AuthorKind = Literal["operator", "workspace"]


class MissingSecret(SpecError):
    """Raised when a reference names an unset (or, for a workspace, a forbidden) variable or an unknown secret."""

    problem_type = "secret-missing"


class ReservedSecret(MissingSecret):
    """Raised when a `${env:NAME}` reference names one of hookline's own settings (`HOOKLINE_PORT`).

    A MissingSecret to whoever resolves it: the variable is not there for trigger files.
    """

    problem_type = "secret-reserved"


@dataclass(frozen=True)
class Sources:
    """What the references of one workspace's definitions resolve from.

    `env_names` None: every variable (the operator wrote it); otherwise only these names.
    `secrets`: the workspace's own `${secret:NAME}` values, decrypted.
    """

    workspace: str | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    env_names: frozenset[str] | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)

    def resolve(self, value: str) -> str:
        """Replace every reference in `value`; MissingSecret naming it otherwise."""
        return _EMBEDDED.sub(self._lookup, value)

    def values_of(self, values: list[str]) -> list[str]:
        """What the references in `values` resolve to, those that resolve (to scrub them)."""
        found = []
        for kind, name in {ref for value in values for ref in _EMBEDDED.findall(value)}:
            if kind == "secret" and name in self.secrets:
                found.append(self.secrets[name])
            elif kind == "env" and name in self.environ:
                found.append(self.environ[name])
        return found

    def _lookup(self, match: re.Match[str]) -> str:
        kind, name = match[1], match[2]
        if kind == "secret":
            if name not in self.secrets:
                raise MissingSecret(f"workspace {self.workspace} has no secret {name}")
            return self.secrets[name]
        check_not_reserved(name)  # before looking: whether it is set is not told either
        if self.env_names is not None:
            # One answer for a forbidden and an unset name: a workspace learns nothing of the rest.
            if name not in self.env_names or name not in self.environ:
                raise MissingSecret(f"${{env:{name}}} is not available to workspace {self.workspace}")
        elif name not in self.environ:
            raise MissingSecret(f"environment variable {name} is not set")
        return self.environ[name]


def sources_for(
    workspace: str,
    author: AuthorKind,
    allowed_env: Mapping[str, frozenset[str]],
    secrets: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> Sources:
    """The Sources of a definition of `workspace` written by `author`."""
    return Sources(
        workspace=workspace,
        environ=os.environ if environ is None else environ,
        env_names=None if author == "operator" else allowed_env.get(workspace, frozenset()),
        secrets=secrets,
    )


def referenced_names(value: str) -> list[str]:
    """The NAME of every `${env:NAME}` in `value`."""
    return [name for kind, name in _EMBEDDED.findall(value) if kind == "env"]


def check_not_reserved(name: str) -> None:
    """ReservedSecret if `name` is one of hookline's own settings, whether it is set or not."""
    if name.upper() in _OWN_SETTINGS:
        raise ReservedSecret(
            f"hookline's own settings cannot be referenced from a trigger file (${{env:{name}}})"
        )


def resolve(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every `${env:NAME}` in `value` as the operator's (any variable); MissingSecret if unset."""
    return Sources(environ=os.environ if environ is None else environ).resolve(value)


def check_auth_references(trigger: Trigger, sources: Sources) -> None:
    """For a workspace's own definition: every reference in `auth` resolves now, or MissingSecret.

    An operator's HMAC secret may name a variable set only on the ingresses; a workspace
    gets its answer at apply, the same for a name it may not use as for one that is unset.
    """
    auth = trigger.auth
    if sources.env_names is None or not isinstance(auth, HmacAuth):
        return
    for secret in [auth.secret] if isinstance(auth.secret, str) else auth.secret:
        try:
            sources.resolve(secret)
        except MissingSecret as exc:
            raise MissingSecret(f"trigger {trigger.name}, field auth.secret: {exc}") from None


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` (base64), a slow hash for passwords people choose."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DIGEST_BYTES)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of a password against a `hash_password` string.

    Only a hash with hookline's own cost (N, r, p, a 32-byte digest) is trusted: the cost
    comes from the stored string, so one written by a tenant (p=64: seconds of CPU a guess)
    or by anything but `hash_password` never matches, and costs nothing to refuse.
    """
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if (scheme, n, r, p) != ("scrypt", str(_N), str(_R), str(_P)):
            return False
        expected = base64.b64decode(digest, validate=True)
        if len(expected) != _DIGEST_BYTES:
            return False
        computed = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=_N,
            r=_R,
            p=_P,
            dklen=_DIGEST_BYTES,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, expected)


def seal(trigger: Trigger, stored: Trigger | None, sources: Sources | None = None) -> Trigger:
    """The trigger as it may be stored: a Basic password becomes its hash.

    When the stored version's hash already matches the password, it is kept, so applying
    an unchanged file does not make a new version.
    """
    auth = trigger.auth
    if not isinstance(auth, BasicAuth) or auth.password is None:
        return trigger
    try:
        password = (sources or Sources()).resolve(auth.password)
    except MissingSecret as exc:
        raise MissingSecret(f"trigger {trigger.name}, field auth.password: {exc}") from None
    previous = stored.auth if stored is not None else None
    if (
        isinstance(previous, BasicAuth)
        and previous.password_hash is not None
        and previous.username == auth.username
        and verify_password(password, previous.password_hash)
    ):
        password_hash = previous.password_hash
    else:
        password_hash = hash_password(password)
    # A reference (not a literal) is kept beside the hash: it names where the password is,
    # which `triggers try` resolves to send the configured credentials (ingress/trials.py).
    reference = auth.password if REFERENCE.fullmatch(auth.password) else None
    sealed = msgspec.structs.replace(auth, password=None, password_hash=password_hash, password_ref=reference)
    return msgspec.structs.replace(trigger, auth=sealed)
