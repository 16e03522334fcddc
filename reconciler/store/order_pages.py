"""The snapshot as the `orders` command reads it: by pages, each one short statement along the
orders' key, so that the first rows print at once and memory holds one page, whatever the number
of orders followed (DESIGN invariant 6)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..model import OrderState
from . import order_rows
from .health import is_unusable
from .order_rows import COLUMNS

if TYPE_CHECKING:
    from .db import Store

PAGE = 1000  # orders per statement

_FILTERS = "(? IS NULL OR source = ?) AND (? IS NULL OR status = ?)"
# Along the key's own index, from the last key printed: a page reads its rows (and those the
# filters skip), never the orders before it, and needs no sort of the whole table.
_FIRST = f"SELECT {COLUMNS} FROM orders WHERE {_FILTERS} ORDER BY source, account, order_id LIMIT ?"
_AFTER = (
    f"SELECT {COLUMNS} FROM orders WHERE (source, account, order_id) > (?, ?, ?) AND {_FILTERS} "
    "ORDER BY source, account, order_id LIMIT ?"
)


async def pages(
    store: Store, source: str | None, status: str | None, *, page: int = PAGE
) -> AsyncIterator[list[OrderState]]:
    """Yield the snapshot, optionally filtered, in (source, account, order_id) order, `page`
    orders at a time (no page empty). An order tracked or untracked meanwhile may or may not
    be among them; none comes twice."""
    after: tuple[str, str, str] | None = None
    filters = (source, source, status, status)
    while True:
        sql, params = (
            (_FIRST, (*filters, page)) if after is None else (_AFTER, (*after, *filters, page))
        )
        try:
            # A statement per page, not one cursor for all: no read transaction stays open
            # while the reader of the output (a pager) waits, holding back the daemon's
            # checkpoints.
            rows = list(await store.conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            # Guarded here: the store's guard wraps coroutines, and this is a generator.
            if not is_unusable(exc):
                raise
            raise store.unusable(exc) from None
        if rows:
            yield [order_rows.state(r) for r in rows]
        if len(rows) < page:
            return
        last = rows[-1]
        after = (last[0], last[1], last[2])
