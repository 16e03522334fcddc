"""The `events` table's rows as a transaction stores them: the statement and its parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..events import Event
from .sql import values

Row = tuple[Any, ...]  # (seq, id, type, time, source, account, order_id, severity, body)


def statement(rows: int) -> str:
    """Return the statement storing `rows` events; an id stored before is skipped."""
    return (
        "INSERT INTO events (seq, id, type, time, source, account, order_id, severity, body) "
        f"VALUES {values(rows, 9)} ON CONFLICT (id) DO NOTHING"
    )


def rows(events: Sequence[Event], first_seq: int) -> list[Row]:
    """Return the rows of `events`, numbered from `first_seq`."""
    # The body as a bytearray, stored as the same BLOB: sqlite3 (CPython 3.11) binds bytes
    # through its adapter lookup (a raised and cleared AttributeError, about 3 k instructions
    # an event, on the database thread holding the GIL), a bytearray as it is (a copy: a tenth).
    return [
        (seq, e.id, e.type.value, e.time, e.source, e.account, e.order_id, e.severity, body)
        for seq, e in enumerate(events, first_seq)
        for body in (bytearray(e.body()),)
    ]
