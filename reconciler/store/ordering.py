"""Which events a sink must receive in the order they happened: those of one ordering key.

An order's events share their order's key (source, account, order id), as they always did.
Events that name no order have keys of their own, or they would overtake each other: a
`source.recovered` delivered while the `source.failed` before it waits for its retry leaves a
receiver's last word on a healthy account "failed". So:
- `source.failed` / `source.recovered`: their account;
- `order.submit_uncertain` / `order.submit_resolved`: the submission's reference, whether or
  not an order is named (a resolution names the order the uncertain event did not know), so
  that a resolution never passes its uncertain event;
- any other type that names no order: one key per type and account.
Events of different keys may pass each other ("across orders there is no order").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

# (source, account, order id) for an order's events; (source, account, kind, value) for the
# others, which no order's key equals.
Key = tuple[str, ...]

# Types whose key is the submission's reference, not the order they may name.
BY_REFERENCE = frozenset({"order.submit_uncertain", "order.submit_resolved"})


def row_key(row: Sequence[Any]) -> Key:
    """Return the ordering key of an outbox row (seq, id, type, order_id, body, ..., source,
    account at 8 and 9)."""
    if row[3] is not None and row[2] not in BY_REFERENCE:
        return (row[8], row[9], row[3])
    return (row[8], row[9], *_apart(row[2], row[4]))


def stored_keys(rows: Iterable[Sequence[Any]]) -> list[tuple[int, Key]]:
    """Return (seq, key) of rows as a transaction stores them (seq, id, type, time, source,
    account, order_id, severity, body): once per event a catch-up stores, so an order's key is
    made in line."""
    return [
        (r[0], (r[4], r[5], r[6]))
        if r[6] is not None and r[2] not in BY_REFERENCE
        else (r[0], (r[4], r[5], *_apart(r[2], r[8])))
        for r in rows
    ]


def held_key(type: str, order_id: str | None, body: bytes) -> str | Key:
    """Return what a sink's batch holds back an event by: its order id (one batch is one sink's,
    as before), else its key with the CloudEvent's `source` (`reconciler/SOURCE/ACCOUNT`) for
    its account, read from the body."""
    if order_id is not None and type not in BY_REFERENCE:
        return order_id
    try:
        origin = json.loads(body).get("source")
    except (ValueError, AttributeError):
        origin = None
    return (str(origin), *_apart(type, body))


def _apart(type: str, body: bytes) -> tuple[str, str]:
    """The key's part after source and account for an event outside the order keys."""
    if type in BY_REFERENCE:
        # An unreadable reference (a body written by hand): every such event shares one key.
        reference = _reference(body)
        return ("reference", "" if reference is None else reference)
    if type.startswith("source."):
        return ("source", "")
    return ("type", type)


def _reference(body: bytes) -> str | None:
    """The `external_reference` of an event's data (None: not readable)."""
    try:
        reference = json.loads(body)["data"]["external_reference"]
    except (ValueError, KeyError, TypeError):
        return None
    return reference if isinstance(reference, str) else None
