"""The external reference a CCV order is followed under, kept when the order is tracked again.

CCV calls the notification URL of the reference an order was submitted with, and its events name
that reference: an order followed under one reference and tracked, or answered by a submit,
under another would move them to the other in silence. `track`, the API's track and a submit's
answer all ask `followed_elsewhere`, inside the transaction that tracks the order: asked before
it, a write of the daemon could slip between the answer and the track.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..logs import fields
from ..model import OrderKey
from .sql import CHUNK, marks, on_thread

if TYPE_CHECKING:
    from .db import Store

# (the order, the reference it is followed under, the reference given)
Moved = tuple[OrderKey, str, str]
# (an order given a reference, that reference, the other followed orders carrying it)
Carried = tuple[str, str, list[str]]


class FollowedElsewhere(Exception):
    """Orders given with a reference are followed under another one; nothing was tracked."""

    def __init__(self, moved: Sequence[Moved]) -> None:
        key, current, given = moved[0]
        super().__init__(f"order {key.order_id} is followed under {current!r}, not {given!r}")
        self.moved = list(moved)


def carried_elsewhere(
    conn: sqlite3.Connection, account: str, orders: Sequence[tuple[str, str | None]]
) -> list[Carried]:
    """The orders of `orders` (id, reference or None) that become a second carrier of the
    reference given: one that other followed CCV orders of the account carry, or that an
    earlier order of `orders` takes; each with those orders' ids. An order that carries the
    reference already (CCV's read-back may give one to several) is none. Runs on the database
    thread, in the caller's transaction."""
    refs = list(dict.fromkeys(ref for _, ref in orders if ref is not None))
    carriers: dict[str, list[str]] = {}
    for i in range(0, len(refs), CHUNK):
        chunk = refs[i : i + CHUNK]
        for ref, oid in conn.execute(
            "SELECT external_reference, order_id FROM orders WHERE source = 'ccv' "
            f"AND account = ? AND external_reference IN ({marks(len(chunk))}) ORDER BY order_id",
            (account, *chunk),
        ):
            carriers.setdefault(ref, []).append(oid)
    carried: list[Carried] = []
    taken: dict[str, str] = {}  # a reference's new carrier among `orders`
    for oid, ref in orders:
        if ref is None:
            continue
        held = carriers.get(ref, [])
        if oid in held:
            continue
        first = taken.setdefault(ref, oid)
        if others := held or ([first] if first != oid else []):
            carried.append((oid, ref, others))
    return carried


def followed_elsewhere(
    conn: sqlite3.Connection, account: str, orders: Sequence[tuple[str, str | None]]
) -> list[Moved]:
    """The CCV orders of `orders` (id, reference or None) given with a reference that are
    followed under another one. Runs on the database thread, in the caller's transaction."""
    given = {oid: ref for oid, ref in orders if ref is not None}
    ids = list(given)
    moved: list[Moved] = []
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i : i + CHUNK]
        rows = conn.execute(
            "SELECT order_id, external_reference FROM orders WHERE source = 'ccv' "
            f"AND account = ? AND order_id IN ({marks(len(chunk))}) "
            "AND external_reference IS NOT NULL",
            (account, *chunk),
        ).fetchall()
        moved += [
            (OrderKey("ccv", account, oid), current, given[oid])
            for oid, current in rows
            if current != given[oid]
        ]
    return moved


def aliases_given(conn: sqlite3.Connection, account: str, moved: Sequence[Moved]) -> set[str]:
    """The ids of `moved` whose reference given is an alias the order keeps (one it was tracked
    under before CCV answered another). Runs on the database thread, in the caller's
    transaction."""
    given = {key.order_id: ref for key, _, ref in moved}
    ids = list(given)
    kept: set[str] = set()
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i : i + CHUNK]
        rows = conn.execute(
            "SELECT order_id, reference FROM order_aliases WHERE source = 'ccv' AND account = ? "
            f"AND order_id IN ({marks(len(chunk))})",
            (account, *chunk),
        ).fetchall()
        kept.update(oid for oid, ref in rows if given[oid] == ref)
    return kept


async def keep_within(
    store: Store, account: str, orders: Sequence[tuple[str, str | None]], *, relink: bool
) -> tuple[list[Moved], list[tuple[str, str | None]], list[Carried]]:
    """Inside the caller's transaction: raise FollowedElsewhere when an order given with a
    reference is followed under another one, unless `relink` says to move it: then its old
    reference stays its alias (as when CCV renames one). Return the moved orders, the orders
    to track and those that become a second carrier of their reference (`carried_elsewhere`:
    tracked all the same, for the caller to say). One given with a reference it keeps as an
    alias is tracked without it (the same reference again changes nothing: a nightly import of
    the reference it was submitted with, which CCV answered another to, goes on)."""
    if not any(ref is not None for _, ref in orders):
        return [], list(orders), []
    moved = await on_thread(store.conn, followed_elsewhere, account, orders)
    kept = list(orders)
    if moved and not relink:
        aliased = await on_thread(store.conn, aliases_given, account, moved)
        moved = [m for m in moved if m[0].order_id not in aliased]
        if moved:
            raise FollowedElsewhere(moved)
        kept = [(oid, None if oid in aliased else ref) for oid, ref in orders]
    # A reference is meant to name one order, but DESIGN.md's track takes any well-formed one
    # (an outside system may reuse one): a second carrier is tracked and said, not refused.
    # A submit of it is refused (submissions.record): that one would cost a second order.
    carried = await on_thread(store.conn, carried_elsewhere, account, kept)
    if moved:
        await store.orders.add_aliases(moved)
    return moved, kept, carried


async def carried_also(store: Store, answered: Sequence[tuple[OrderKey, str]]) -> list[list[str]]:
    """For each (order, reference CCV answered for it): the other orders of its account that
    carry that reference now, by id. In the caller's transaction, after its answers were
    written: an order CCV renamed in the same transaction no longer carries it (one renamed in
    a later transaction of the same pass still does, here)."""
    return await on_thread(store.conn, _carried_also, answered)


async def also_carried(store: Store, key: OrderKey) -> list[str]:
    """The other orders of `key`'s account that carry the reference `key` carries now, by id
    (none when it carries none). In the caller's transaction."""
    return await on_thread(store.conn, _also_carried, key)


def _also_carried(conn: sqlite3.Connection, key: OrderKey) -> list[str]:
    return [
        oid
        for (oid,) in conn.execute(
            "SELECT o.order_id FROM orders o JOIN orders mine ON mine.source = o.source "
            "AND mine.account = o.account AND mine.external_reference = o.external_reference "
            "WHERE mine.source = ? AND mine.account = ? AND mine.order_id = ? "
            "AND o.order_id != mine.order_id ORDER BY o.order_id",
            key,
        )
    ]


def _carried_also(
    conn: sqlite3.Connection, answered: Sequence[tuple[OrderKey, str]]
) -> list[list[str]]:
    return [
        [
            oid
            for (oid,) in conn.execute(
                "SELECT order_id FROM orders WHERE external_reference = ? AND source = ? "
                "AND account = ? AND order_id != ? ORDER BY order_id",
                (ref, key.source, key.account, key.order_id),
            )
        ]
        for key, ref in answered
    ]


def log_carried(log: logging.Logger, account: str, carried: Sequence[Carried]) -> None:
    """Warn once per track that gave orders a reference other followed orders carry
    (`keep_within`): the first such order, the others carrying its reference, and how many."""
    if not carried:
        return
    order_id, ref, others = carried[0]
    log.warning(
        "order.reference_carried",
        extra=fields(
            source="ccv",
            account=account,
            order_id=order_id,
            external_reference=ref,
            also_carried_by=others,
            orders=len(carried),
        ),
    )


def log_submit_sending(log: logging.Logger, account: str, order_id: str, ref: str) -> None:
    """Warn that an order was tracked with a reference whose submit is being sent: should CCV
    answer another order, both carry it (said then, by the submit's `order.reference_carried`)."""
    log.warning(
        "order.reference_submit_sending",
        extra=fields(source="ccv", account=account, order_id=order_id, external_reference=ref),
    )


def log_relinked(log: logging.Logger, account: str, moved: Sequence[Moved]) -> None:
    """Warn once per CCV order `relink` moved to the reference given (`track --relink`,
    `POST /orders` with `"relink": true`), naming both references."""
    for key, previous, ref in moved:
        log.warning(
            "order.reference_relinked",
            extra=fields(
                source="ccv",
                account=account,
                order_id=key.order_id,
                previous_reference=previous,
                external_reference=ref,
            ),
        )


async def track(
    store: Store,
    account: str,
    orders: Sequence[tuple[str, str | None]],
    now: float,
    *,
    relink: bool = False,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[int, list[Moved], list[Carried]]:
    """Track CCV orders (id, reference or None) in one transaction, keeping their references
    (`keep_within`); return how many were new or changed, the orders moved and those that
    became a second carrier of their reference."""
    async with store.transaction():
        moved, kept, carried = await keep_within(store, account, orders, relink=relink)
        added = await store.orders.track_within("ccv", account, kept, now, progress)
    return added, moved, carried
