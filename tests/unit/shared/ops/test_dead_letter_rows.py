"""What the dispatcher stores of a message taken from the dead-letter queue."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
from aio_pika.abc import AbstractIncomingMessage

from shared.ops.deadletters import stored_letter
from shared.wire.messages import Invocation, RequestData, invocation_encoder

MOVED = datetime.datetime(2026, 12, 2, 8, 0, tzinfo=datetime.UTC)


@dataclass
class Taken:
    """The fields of an incoming message `stored_letter` reads."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    content_type: str | None = None
    type: str | None = None


def _stored(message: Taken) -> Any:
    return stored_letter(cast(AbstractIncomingMessage, message), MOVED)


def test_an_invocation_is_filed_under_its_execution_with_where_and_when_it_died() -> None:
    invocation = Invocation(
        id="0190f000-0000-7000-8000-000000000001",
        workspace="w",
        trigger="t",
        version=1,
        mode="async",
        received_at=0.0,
        request=RequestData(method="POST", path="/hooks/w/t"),
    )
    died = datetime.datetime(2026, 12, 1, 9, 30)  # AMQP timestamps arrive without a zone
    letter = _stored(
        Taken(
            invocation_encoder.encode(invocation),
            headers={
                "x-death": [{"reason": "rejected", "queue": "p.work", "time": died}],
                "hookline-ordering-key": "k1",
            },
            message_id=invocation.id,
            content_type="application/msgpack",
        )
    )
    assert (letter.id, letter.execution_id, letter.workspace, letter.trigger) == (
        invocation.id,
        invocation.id,
        "w",
        "t",
    )
    assert (letter.reason, letter.queue, letter.died_at) == (
        "rejected",
        "p.work",
        died.replace(tzinfo=datetime.UTC),
    )
    assert msgspec.msgpack.decode(letter.headers) == {"hookline-ordering-key": "k1"}  # x-death left out


def test_a_letter_with_no_id_is_named_by_its_body_so_a_redelivery_finds_its_row() -> None:
    first = _stored(Taken(b"\x00 junk"))
    again = _stored(Taken(b"\x00 junk"))
    assert first.id == again.id == "sha256:" + hashlib.sha256(b"\x00 junk").hexdigest()
    assert (first.execution_id, first.workspace, first.reason, first.died_at) == (
        None,
        None,
        "unknown",
        MOVED,
    )


def test_a_nul_in_a_letters_id_is_replaced_so_postgresql_can_store_it() -> None:
    letter = _stored(Taken(b"x", message_id="a\x00b"))
    assert letter.id == "a\ufffdb"
