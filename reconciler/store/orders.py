"""The `orders` table: the snapshot of followed orders, and the page of them a pass works on.

A pass over an account reads its open orders a page at a time (`Orders.page`) and hands the
page back to `load` and `save`, so that each batch need not read its orders again: the page is
a value the pass holds. The store keeps every live page current with its own writes, and a page
goes stale (its rows are dropped, the next loads read the database) when another process writes
the store, when orders are tracked or untracked, when a write outside the pass changed rows
of its account (live_pages.py), when a `save` wrote one of its orders while it was read, or
when a write of its account's rows rolls back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..model import NEVER_SQL, OrderKey, OrderState, Source
from . import counts, order_rows
from .errors import guarded
from .live_pages import LivePages, Owner, Page, Reading
from .order_reads import OrderReads
from .order_rows import COLUMNS, SUBMITTED, TRACK, Plan, Row
from .order_sql import PLANNED_SQL, unwatched
from .sql import CHUNK, Statement, chunks, marks, on_thread, run_statements

if TYPE_CHECKING:
    from .db import Store

_LAST_ROWID = 2**63 - 1  # SQLite's greatest: a page up to it has no bound
_TRACK_CHUNK = 5000  # orders per statement of `track`, so that a long file shows progress
Given = Sequence[tuple[str, str | None]]  # orders to track: (id, external reference or None)
Progress = Callable[[int], None]  # hears of each chunk tracked
_quiet: Progress = lambda n: None  # noqa: E731
_Key = tuple[str, str, str]  # an OrderKey is this tuple


class Loaded(dict[OrderKey, OrderState]):
    """The snapshot states that `load` found, with their rowids (`save` writes by rowid)."""

    __slots__ = ("rowids",)

    def __init__(self) -> None:
        super().__init__()
        self.rowids: dict[_Key, int] = {}


@guarded
class Orders(OrderReads):
    """The snapshot: the pages passes hold, load, save, and every write of the orders' rows,
    each making the pages it may have changed stale (`_drop_pages`); and the reads of status
    and scheduling (`OrderReads`)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        # Pages that passes hold, kept current by `save`, dropped by the other writes.
        self._pages = LivePages()

    async def page(
        self,
        source: Source,
        account: str,
        *,
        after: int = 0,
        limit: int = 5000,
        settled_since: float | None = None,
        upto: int | None = None,
    ) -> Page:
        """Return the next page of orders not in an end state, in storage order after the
        position `after` (up to `upto`, when given), but those no longer watched (`unwatched`,
        `settled_since`).

        Storage (rowid) order rather than id order: a batch then rewrites neighbouring rows,
        a few database pages instead of one page per order.
        """
        # Before the rows: a write landing while they are read makes the page stale.
        read = self._pages.reading((source, account))
        try:
            return await self._page(read, source, account, after, upto, limit, settled_since)
        finally:
            self._pages.done(read)

    async def _page(
        self,
        read: Reading,
        source: Source,
        account: str,
        after: int,
        upto: int | None,
        limit: int,
        settled_since: float | None,
    ) -> Page:
        version = await self._store.data_version()  # before the rows: a later write is seen
        # Through the index of open orders (migration 9), which lists an account's in rowid
        # order: the rowid range alone would read every ended order on the way.
        unwatched_sql, unwatched_params = unwatched(source, settled_since)
        sql = (
            f"SELECT {COLUMNS}, id FROM orders INDEXED BY orders_open WHERE source = ? "
            f"AND account = ? AND end_state = 0 AND id > ? AND id <= ? AND NOT {unwatched_sql} "
            "ORDER BY id LIMIT ?"
        )
        until = _LAST_ROWID if upto is None else upto
        params = (source, account, after, until, *unwatched_params, limit)
        rows = list(await self._conn.execute_fetchall(sql, params))
        kept = order_rows.kept(rows)
        last = max((rowid for rowid, _ in kept.values()), default=after)
        page = Page([key[2] for key in kept], last, version, (source, account), kept)
        self._pages.hold(page, read)  # stale at once if its rows were written while read
        return page

    async def load(self, keys: Iterable[OrderKey], page: Page | None = None) -> Loaded:
        """Return the snapshot states of the given orders (missing ones are absent), from the
        page where it holds them and is current."""
        found = Loaded()
        rows: dict[_Key, tuple[int, Row]] = {}
        if page is not None and page.rows:
            if await self._store.data_version() == page.version:
                rows = page.rows
            else:
                page.rows.clear()  # another process wrote the store
        rowids = found.rowids
        groups: dict[tuple[str, str], list[str]] = {}
        for key in keys:
            hit = rows.get(key)
            if hit is not None:
                found[key] = order_rows.state(hit[1])
                rowids[key] = hit[0]
            else:
                groups.setdefault((key.source, key.account), []).append(key.order_id)
        for (source, account), ids in groups.items():
            unique = list(dict.fromkeys(ids))
            for i in range(0, len(unique), CHUNK):
                chunk = unique[i : i + CHUNK]
                sql = (
                    f"SELECT {COLUMNS}, id FROM orders WHERE source = ? AND account = ? "
                    f"AND order_id IN ({marks(len(chunk))})"
                )
                fetched = await self._conn.execute_fetchall(sql, (source, account, *chunk))
                order_rows.collect(fetched, found, rowids)
        return found

    async def save(self, loaded: Loaded, states: Sequence[tuple[OrderState, Plan | None]]) -> None:
        """Write snapshot states (inside a transaction), each with its plan or None: the ones
        `loaded` found by rowid, the others by upsert. The pages holding them follow."""
        known: list[list[tuple[Any, ...]]] = [[] for _ in range(order_rows.SHAPES)]  # by shape
        references: list[tuple[int, str]] = []
        new = []
        moved: list[counts.Move] = []  # status changes, counted once per batch
        rowids = loaded.rowids
        pages = self._pages.current()
        for state, plan in states:
            key = state.key
            rowid = rowids.get(key)
            if rowid is None:
                new.append(order_rows.row(state, plan))  # counted by the insert trigger
                continue
            old = loaded[key]
            before = old.status
            if before != state.status:
                moved.append((key.source, key.account, before, state.status))
            shape = order_rows.shape(old, state)
            row, update = order_rows.known_row(state, plan, rowid, shape)
            known[shape].append(update)
            if state.external_reference is not None:
                references.append((rowid, state.external_reference))
            for page in pages:
                if key in page.rows:
                    page.rows[key] = (rowid, row)
        if self._pages.in_flight:
            # A page being read may have read these rows before this write.
            self._pages.wrote([state.key for state, _ in states])
        # Rolled back, the pages would hold rows the database does not: those this kept
        # current, and those read since on this connection, which saw the open transaction.
        self._store.on_rollback(lambda: self._pages.drop_each(state.key for state, _ in states))
        statements: list[Statement] = [
            (order_rows.order_update(n, shape), params)
            for shape, updates in enumerate(known)
            for n, params in chunks(updates)
        ]
        statements += [(order_rows.reference_update(n), p) for n, p in chunks(references)]
        counted = counts.changes(moved)
        if counted is not None:
            statements.append(counted)
        # New orders (a pending list's) as rows of one statement, not one step each: each step
        # of an executemany takes the GIL back from the busy event loop.
        statements += [(order_rows.upsert(n), params) for n, params in chunks(new)]
        if statements:
            await on_thread(self._conn, run_statements, statements)

    async def track(
        self, source: Source, account: str, orders: Given, now: float, progress: Progress = _quiet
    ) -> int:
        """Start following orders (id, external reference), all in one transaction; return how
        many were new or given another reference. `progress` hears of each chunk written."""
        async with self._store.transaction():
            return await self.track_within(source, account, orders, now, progress)

    async def track_within(
        self, source: Source, account: str, orders: Given, now: float, progress: Progress = _quiet
    ) -> int:
        """`track` inside a transaction the caller holds (with statements of its own)."""
        added = 0
        for i in range(0, len(orders), _TRACK_CHUNK):
            chunk = orders[i : i + _TRACK_CHUNK]
            cur = await self._conn.executemany(
                TRACK, [(source, account, oid, ref, now) for oid, ref in chunk]
            )
            # The statement's own rows: total_changes would count the counts' triggers too.
            added += cur.rowcount
            progress(len(chunk))
        self._drop_pages()
        return added

    @contextlib.contextmanager
    def tracking_submitted(
        self, source: Source, account: str, order_id: str, reference: str | None, now: float
    ) -> Iterator[Statement]:
        """Give the statement tracking an order whose submit named its id
        (`order_rows.SUBMITTED`), for the block to commit with its own in one hand-off; the
        pages are dropped, as by `track`, once the block is done."""
        try:
            yield SUBMITTED, (source, account, order_id, reference, now, now)
        finally:
            # Not before: a page read while the submit waits for the writer would read the
            # rows as they were, and keep them. Once the block is done, the statement has run,
            # or is queued on the connection before any read that begins after this drop.
            self._drop_pages()

    async def untrack(self, source: Source, account: str | None, order_ids: Sequence[str]) -> int:
        """Stop following orders (their history stays); return how many were followed."""
        async with self._store.transaction():
            return await self.untrack_within(source, account, order_ids)

    async def untrack_within(self, source: Source, account: str | None, ids: Sequence[str]) -> int:
        """`untrack` inside the caller's transaction."""
        cur = await self._conn.executemany(
            "DELETE FROM orders WHERE source = ? AND order_id = ? AND (? IS NULL OR account = ?)",
            [(source, oid, account, account) for oid in ids],
        )
        self._drop_pages()
        return cur.rowcount

    def _drop_pages(self, of: Owner | None = None) -> None:
        """Make every page stale (orders were added or deleted: track, untrack, retention), or
        those of one account `of` (source, account), the only ones holding its rows; inside a
        transaction, again if it rolls back."""
        # A page must hold only rows that exist: `save` counts a status change of a page's row
        # without reading it again. Simpler to read them all again than to follow.
        self._pages.drop(of)
        if self._conn.in_transaction:
            # A page read since, on this connection, read the rows as the transaction wrote
            # them: rolled back, it would keep rows the database does not hold.
            self._store.on_rollback(lambda: self._pages.drop(of))

    async def add_aliases(self, references: Sequence[tuple[OrderKey, str, str]]) -> None:
        """Keep each (order, reference it carried, reference answered)'s replaced reference as
        an alias of the order, inside the caller's transaction: CCV calls a notification URL
        once, and the URL names the reference the order was tracked or submitted with."""
        await self._conn.executemany(
            "INSERT OR IGNORE INTO order_aliases (reference, source, account, order_id) "
            "VALUES (?, ?, ?, ?)",
            [(tracked, *key) for key, tracked, _ in references],
        )

    async def forget_failures(self, source: Source, account: str) -> None:
        """Start every failure streak of an account from 0 (inside the caller's transaction):
        the checks an account's outage failed were the account's failures, not its orders'."""
        await self._conn.execute(
            "UPDATE orders INDEXED BY orders_failing SET failure_streak = 0 "
            "WHERE source = ? AND account = ? AND failure_streak > 0",
            (source, account),
        )  # and the notified orders it left unanswered are asked first (notified_orders.py)
        sql = "UPDATE notified_orders SET next_at = 0 WHERE source = ? AND account = ?"
        await self._conn.execute(sql, (source, account))
        # A pass holding a page of these rows would write their old streaks back.
        self._drop_pages(of=(source, account))

    async def postpone(
        self, source: Source, account: str, planned: Sequence[tuple[str, float]]
    ) -> None:
        """Move orders' next checks to the times given (order id, time), never earlier, inside
        the caller's transaction: checks not made (a circuit breaker's pass left them unasked),
        so no answer and no failure."""
        await self._conn.executemany(
            "UPDATE orders SET next_check_at = max(next_check_at, ?) "
            "WHERE source = ? AND account = ? AND order_id = ? AND end_state = 0",
            [(at, source, account, order_id) for order_id, at in planned],
        )
        # A pass holding a page of these rows would write their old next checks back.
        self._drop_pages(of=(source, account))

    async def bring_due(
        self,
        source: Source,
        account: str,
        ids: Sequence[str],
        now: float,
        *,
        unless_asked_within: tuple[float, float],
    ) -> int:
        """Bring the next check of these orders, open ones only, to `now` at the latest, but not
        of one whose answer was asked within `unless_asked_within` (store/due_now.py), inside
        the caller's transaction; return how many."""
        since, until = unless_asked_within
        cur = await self._conn.executemany(
            "UPDATE orders SET next_check_at = min(next_check_at, ?) "
            "WHERE source = ? AND account = ? AND order_id = ? AND end_state = 0 "
            "AND (asked_at IS NULL OR asked_at NOT BETWEEN ? AND ?)",
            [(now, source, account, order_id, since, until) for order_id in ids],
        )
        # A pass holding a page of these rows would write their old next checks back; pages
        # hold one account's rows each: the others' stay current.
        self._drop_pages(of=(source, account))
        return max(cur.rowcount, 0)

    async def plan_checks(
        self, source: Source, account: str, planned: Sequence[tuple[float, int]]
    ) -> None:
        """Set the next checks of an account's orders (time, rowid), inside the caller's
        transaction (store/order_steps.py)."""
        if not planned:
            return
        await self._conn.executemany("UPDATE orders SET next_check_at = ? WHERE id = ?", planned)
        # A pass holding a page of these rows would write their old check times back.
        self._drop_pages(of=(source, account))

    async def shift_checks_back(self, source: Source, account: str, now: float, step: float) -> int:
        """Move the account's planned checks (`order_sql.PLANNED_SQL`) `step` seconds earlier, no
        earlier than `now`, inside the caller's transaction (store/order_steps.py); return how
        many moved."""
        cursor = await self._conn.execute(
            "UPDATE orders INDEXED BY orders_due SET next_check_at = "
            f"max(:now, next_check_at - :step) {PLANNED_SQL}",
            {"now": now, "source": source, "account": account, "step": step},
        )
        shifted = max(cursor.rowcount, 0)
        await cursor.close()
        if shifted:
            # A pass holding a page of these rows would write their old check times back.
            self._drop_pages(of=(source, account))
        return shifted

    async def delete_ended(self, changed_before: float, limit: int) -> int:
        """Delete up to `limit` orders in an end state whose last change is older than
        `changed_before`, inside the caller's transaction (retention's); return how many."""
        cur = await self._conn.execute(
            "DELETE FROM orders WHERE id IN (SELECT id FROM orders INDEXED BY orders_ended "
            "WHERE end_state = 1 AND coalesce(last_changed, tracked_at, 0) < ? LIMIT ?)",
            (changed_before, limit),
        )
        # The statement's own rows: total_changes would count the counts' triggers too.
        if cur.rowcount:
            self._drop_pages()
        return cur.rowcount

    async def delete_rows(self, rowids: Sequence[int]) -> None:
        """Delete orders by rowid, inside the caller's transaction (retention's)."""
        if rowids:
            sql = f"DELETE FROM orders WHERE id IN ({marks(len(rowids))})"
            await self._conn.execute(sql, rowids)
            self._drop_pages()

    async def unplan(self, rowids: Sequence[int]) -> None:
        """Set the next check of orders (by rowid) to never, inside the caller's transaction
        (retention's, of orders no longer watched)."""
        if rowids:
            sql = f"UPDATE orders SET next_check_at = {NEVER_SQL} WHERE id IN "
            await self._conn.execute(f"{sql}({marks(len(rowids))})", rowids)
            self._drop_pages()
