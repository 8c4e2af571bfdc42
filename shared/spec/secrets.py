"""Secrets in trigger files: `${env:NAME}` references, and Basic passwords hashed at rest.

A trigger file never holds a secret a registry would store in plain text: HMAC secrets and
connection credentials are references resolved by the service that uses them; a Basic
password (literal or reference) is replaced by its scrypt hash when the file is applied.
hookline's own settings (`HOOKLINE_<SETTING>`: the database URL, the admin token...) live in
the same environment and are never resolved for a trigger file; other `HOOKLINE_` names
(`HOOKLINE_GITHUB_SECRET`) are the file's to use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Mapping

import msgspec

from shared.errors import SpecError
from shared.settings import Settings
from shared.spec.model import BasicAuth, Trigger

REFERENCE = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
_EMBEDDED = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
# shared/settings.py reads HOOKLINE_<FIELD> of each Settings field; compared upper-cased, as
# Windows names ignore case. Read from the Struct, so a new setting is reserved with it.
_OWN_SETTINGS = frozenset(f"HOOKLINE_{field.upper()}" for field in Settings.__struct_fields__)

# scrypt cost: ~50 ms on this class of machine, once per apply and once per new pair at
# the ingress (verified pairs are cached there).
_N, _R, _P = 2**14, 8, 1
_DIGEST_BYTES = 32


class MissingSecret(SpecError):
    """Raised when a `${env:NAME}` reference names an unset environment variable."""

    problem_type = "secret-missing"


class ReservedSecret(MissingSecret):
    """Raised when a `${env:NAME}` reference names one of hookline's own settings (`HOOKLINE_PORT`).

    A MissingSecret to whoever resolves it: the variable is not there for trigger files.
    """

    problem_type = "secret-reserved"


def referenced_names(value: str) -> list[str]:
    """The NAME of every `${env:NAME}` in `value`."""
    return _EMBEDDED.findall(value)


def check_not_reserved(name: str) -> None:
    """ReservedSecret if `name` is one of hookline's own settings, whether it is set or not."""
    if name.upper() in _OWN_SETTINGS:
        raise ReservedSecret(
            f"hookline's own settings cannot be referenced from a trigger file (${{env:{name}}})"
        )


def resolve(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every `${env:NAME}` in `value` by the variable's value; MissingSecret if unset."""
    env = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match[1]
        check_not_reserved(name)  # before looking: whether it is set is not told either
        if name not in env:
            raise MissingSecret(f"environment variable {name} is not set")
        return env[name]

    return _EMBEDDED.sub(lookup, value)


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


def seal(trigger: Trigger, stored: Trigger | None, environ: Mapping[str, str] | None = None) -> Trigger:
    """The trigger as it may be stored: a Basic password becomes its hash.

    When the stored version's hash already matches the password, it is kept, so applying
    an unchanged file does not make a new version.
    """
    auth = trigger.auth
    if not isinstance(auth, BasicAuth) or auth.password is None:
        return trigger
    try:
        password = resolve(auth.password, environ)
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
    sealed = msgspec.structs.replace(auth, password=None, password_hash=password_hash)
    return msgspec.structs.replace(trigger, auth=sealed)
