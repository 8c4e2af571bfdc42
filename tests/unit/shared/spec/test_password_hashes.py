"""Basic passwords: only a hash made with hookline's own scrypt cost is ever trusted (review #7)."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest

from shared.errors import SpecError
from shared.spec.loader import load_text
from shared.spec.secrets import hash_password, verify_password


def _scrypt(password: str, n: int, r: int, p: int) -> str:
    salt = b"saltsaltsaltsalt"
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def test_a_hash_made_by_hookline_verifies() -> None:
    stored = hash_password("correct horse")
    assert (verify_password("correct horse", stored), verify_password("wrong", stored)) == (True, False)


@pytest.mark.parametrize(("n", "r", "p"), [(2**14, 8, 2), (2**10, 8, 1), (2**10, 4, 1)])
def test_a_stored_hash_with_other_scrypt_parameters_is_not_trusted_and_costs_nothing(
    n: int, r: int, p: int
) -> None:
    stored = _scrypt("correct horse", n, r, p)  # the right password, another cost
    started = time.perf_counter()
    assert verify_password("correct horse", stored) is False
    assert time.perf_counter() - started < 0.01  # refused before any hashing


def test_a_stored_hash_with_a_costly_p_is_refused_without_hashing() -> None:
    # As the review's probe (p=64: 2.75 s a guess); the digest need not even be right.
    stored = "scrypt$16384$8$64$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 43 + "="
    started = time.perf_counter()
    assert verify_password("anything", stored) is False
    assert time.perf_counter() - started < 0.01


def test_a_password_hash_in_a_trigger_file_is_refused() -> None:
    text = f"""
workspace: ws
triggers:
  - name: t
    auth: {{type: basic, username: u, password_hash: "{_scrypt("x", 2**10, 8, 1)}"}}
"""
    with pytest.raises(SpecError) as raised:
        load_text(text, source="f.yaml")
    assert str(raised.value) == (
        "f.yaml: trigger t, field auth.password_hash: cannot be given; write `password` "
        "(literal or ${env:NAME}) and hookline stores its hash"
    )
