"""A write's claim (a CCV submit's `sending` row) committed with a seq it hands out, so that
the history's mark counts it (store/history.py): a database that lost it has gone back."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from .history import FOLLOW, RAISE_FLOOR, took_up
from .oneshot import run_at_once
from .sql import Statement

if TYPE_CHECKING:
    from .db import Store


class ClaimRefused(Exception):
    """A claim's `unless` query found rows (`rows`): nothing was committed."""

    def __init__(self, rows: list[tuple[object, ...]]) -> None:
        super().__init__("the claim is refused")
        self.rows = rows


async def claim(
    store: Store,
    statement: Statement,
    unless: Statement | None = None,
    before: Statement | None = None,
) -> int | None:
    """Commit `statement` (the INSERT of a write's claim: a CCV submit's), after `before` in
    the same transaction, in one hand-off with a seq it hands out, and return the rowid it
    inserted: the mark counts the claim, as it counts a CCNow post's (`Events.skip_seq`), so a
    database that lost it has gone back. Raise ClaimRefused, committing nothing, when `unless`
    (a query, read in the same transaction after the INSERT) finds rows."""
    try:
        rowid, seq, version, epoch = await run_at_once(store, _claim, statement, unless, before)
    except BaseException:
        store.events.seq_moved(None)  # cancelled, the thread commits it all the same
        raise
    # Not through `transaction`: what another process moved is taken up here (its seq is the
    # claim's, after the floor), before the mark is written with the epoch it holds.
    took_up(store, version, seq, epoch)
    if store.history is not None:
        store.history.note(seq)
    return rowid


def _claim(
    conn: sqlite3.Connection,
    statement: Statement,
    unless: Statement | None,
    before: Statement | None,
) -> tuple[int | None, int, int, str | None]:
    if before is not None:
        conn.execute(*before)
    rowid = conn.execute(*statement).lastrowid
    if unless is not None and (rows := conn.execute(*unless).fetchall()):
        raise ClaimRefused([tuple(r) for r in rows])  # rolled back whole (run_at_once)
    [(last, epoch)] = conn.execute(FOLLOW).fetchall()
    conn.execute(RAISE_FLOOR, (int(last) + 1,))
    version = int(conn.execute("PRAGMA data_version").fetchall()[0][0])
    return rowid, int(last) + 1, version, epoch
