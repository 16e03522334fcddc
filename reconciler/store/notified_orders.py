"""Orders a notification named whose check has not answered yet: CCV calls a notification URL
once and never again, so an acknowledged notification stands here until a check of its order
answers (a status, CCV's own "not found"), whatever failed meanwhile (a 5xx after retries, a
timeout, the account's outage, a stop). Such orders are asked again at `next_at`, the next
start's catch-up asks them all, end states too, and the account's recovery makes them due. One
goes with its order (untracked, pruned: a trigger, migration 28): tracked again, the order has
no old call standing to be asked as a new one."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field

from ..model import Source
from .commit import mark_after_commit
from .db import Store

# Notes written in one transaction, at most (`Notes`).
MAX_NOTES = 64

# A repeat is a new call: its time is what a check must answer after.
_UPSERT = (
    "INSERT INTO notified_orders (source, account, order_id, notified_at, next_at) "
    "SELECT ?, ?, ?, ?, ? WHERE {followed} ON CONFLICT (source, account, order_id) "
    "DO UPDATE SET notified_at = excluded.notified_at, next_at = excluded.next_at"
)
_FOLLOWED = "EXISTS (SELECT 1 FROM orders WHERE source = ? AND account = ? AND order_id = ?)"


async def note(
    store: Store,
    source: Source,
    account: str,
    order_id: str,
    now: float,
    *,
    followed_only: bool = False,
) -> bool:
    """Remember a notification of an order, due at once (a repeat: from its own time); with
    `followed_only`, only of an order followed (read in the same transaction, so an untrack
    cannot come between). Return whether it was remembered."""
    async with store.transaction(urgent=True):
        return await upsert(store, source, account, [order_id], now, followed_only=followed_only)


@dataclass(slots=True)
class _Note:
    order_id: str
    now: float
    followed_only: bool
    # Whether it was kept once its batch committed; None: the batch did not, it writes its own.
    kept: asyncio.Future[bool | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(slots=True)
class _Batch:
    notes: list[_Note]
    begun: bool = False  # its transaction holds the writer: its notes are being written


class Notes:
    """`note` for one account, the notes that wait for the writer together written in one
    transaction. Each notification's record waits for the writer before its 202; one
    transaction each, a burst of them (a catch-up keeping the writer busy) queued one behind
    the other, each holding the writer for its own statements and commit in turn, the last
    one answered only after all of them. The first to wait leads a batch; those that come
    while it waits join it, and are answered when its commit is on disk, as each alone."""

    def __init__(
        self, store: Store, source: Source, account: str, *, most: int = MAX_NOTES
    ) -> None:
        self.store = store
        self.source = source
        self.account = account
        self.most = most
        self._open: _Batch | None = None  # the batch waiting for the writer

    async def note(self, order_id: str, now: float, *, followed_only: bool = False) -> bool:
        """`note` of one order, in the batch waiting for the writer if there is one. Raises
        StoreError, the batch's: each note of it would have met the same. Cancelled (a stop)
        before its batch began, a note leaves it; once begun, the batch's outcome is its own,
        waited for: its cancellation is raised marked `after_commit` if the batch committed,
        as a note alone whose COMMIT was under way (commit.py)."""
        mine = _Note(order_id, now, followed_only)
        batch = self._open
        if batch is None or len(batch.notes) >= self.most:
            return await self._write(_Batch([mine]))
        batch.notes.append(mine)
        try:
            # Shielded: a cancelled caller must not take the note's outcome from its batch.
            kept = await asyncio.shield(mine.kept)
        except asyncio.CancelledError as exc:
            if not batch.begun:
                batch.notes.remove(mine)  # stopped before it was written, nor will be
                raise
            if await _decided(mine.kept) is None:
                raise  # the batch did not commit
            raise mark_after_commit(exc) from None
        if kept is not None:
            return kept
        # Its leader was cancelled before the batch committed (a stop): written alone.
        return await note(
            self.store, self.source, self.account, order_id, now, followed_only=followed_only
        )

    async def _write(self, batch: _Batch) -> bool:
        """Lead `batch`: write it once the writer is ours; return the leader's outcome."""
        self._open = batch
        notes = batch.notes
        kept: list[bool] = []
        rolled_back = False

        def undo() -> None:
            nonlocal rolled_back
            rolled_back = True

        try:
            async with self.store.transaction(urgent=True):
                batch.begun = True
                if self._open is batch:
                    self._open = None  # later ones wait for the next transaction
                self.store.on_rollback(undo)
                for n in notes:
                    one = [n.order_id]
                    only = n.followed_only
                    kept.append(
                        await upsert(
                            self.store, self.source, self.account, one, n.now, followed_only=only
                        )
                    )
        except BaseException as exc:
            if self._open is batch:
                self._open = None
            if len(kept) == len(notes) and not rolled_back:
                # Committed, the leader cancelled as it ended (commit.py): kept all the same.
                _tell(notes, kept)
            elif isinstance(exc, Exception):
                for n in notes[1:]:
                    if not n.kept.done():
                        n.kept.set_exception(exc)
            else:
                _tell(notes, [None] * len(notes))  # not written: each writes its own
            raise
        _tell(notes, kept)
        return kept[0]


async def _decided(kept: asyncio.Future[bool | None]) -> bool | None:
    """A note's outcome from its batch under way, waited for through cancellations: once its
    batch holds the writer, its COMMIT decides (commit.py). None: not written."""
    while True:
        try:
            return await asyncio.shield(kept)
        except asyncio.CancelledError:
            if kept.cancelled():
                raise
        except Exception:
            return None  # the batch failed


def _tell(batch: list[_Note], kept: list[bool] | list[None]) -> None:
    for n, k in zip(batch[1:], kept[1:], strict=True):
        if not n.kept.done():
            n.kept.set_result(k)


async def upsert(
    store: Store,
    source: Source,
    account: str,
    order_ids: Collection[str],
    now: float,
    *,
    followed_only: bool = False,
) -> bool:
    """`note`'s statement for each order, inside the caller's transaction; return whether any
    was remembered."""
    kept = False
    for order_id in order_ids:
        key = (source, account, order_id)
        args: tuple[object, ...]
        if followed_only:
            sql, args = _UPSERT.format(followed=_FOLLOWED), (*key, now, now, *key)
        else:
            # `WHERE true`: SQLite reads an upsert's SELECT only with a WHERE clause.
            sql, args = _UPSERT.format(followed="true"), (*key, now, now)
        cursor = await store.conn.execute(sql, args)
        kept = kept or cursor.rowcount > 0
    return kept


async def pending(
    store: Store, source: Source, account: str, *, due_by: float | None = None
) -> list[str]:
    """Return the notified orders not answered yet, first noted first; with `due_by`, only those
    due to be asked again by then."""
    sql = "SELECT order_id FROM notified_orders WHERE source = ? AND account = ?"
    args: tuple[object, ...] = (source, account)
    if due_by is not None:
        sql, args = sql + " AND next_at <= ?", (*args, due_by)
    rows = await store.conn.execute_fetchall(sql + " ORDER BY notified_at, order_id", args)
    return [str(r[0]) for r in rows]


async def settle(
    store: Store,
    source: Source,
    account: str,
    *,
    answered: Collection[tuple[str, float | None]],
    failed: Collection[str],
    now: float,
    gap_s: tuple[float, float],
) -> None:
    """Forget the notifications of orders whose check answered (order id, when it was asked:
    a notification that came after the question still stands); ask the failed ones again, the
    gap growing with the notification's age within `gap_s` (least, most): an order CCV keeps
    failing is not asked every poll interval for ever, nor left to its own backoff."""
    if not answered and not failed:
        return
    least, most = gap_s
    async with store.transaction():
        await store.conn.executemany(
            "DELETE FROM notified_orders WHERE source = ? AND account = ? AND order_id = ? "
            "AND notified_at <= ?",
            [
                (source, account, order_id, float("inf") if asked is None else asked)
                for order_id, asked in answered
            ],
        )
        await store.conn.executemany(
            "UPDATE notified_orders SET next_at = ? + MIN(?, MAX(?, ? - notified_at)) "
            "WHERE source = ? AND account = ? AND order_id = ?",
            [(now, most, least, now, source, account, order_id) for order_id in failed],
        )
