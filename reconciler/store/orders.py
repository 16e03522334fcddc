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

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..model import OrderKey, OrderState, Source
from . import counts, order_pages, order_rows
from .errors import StoreError, guarded
from .live_pages import LivePages, Owner, Page, Reading
from .order_rows import COLUMNS, SUBMITTED, TRACK, Plan, Row
from .order_sql import FAILING_SQL, answered_sql, due_sql, stuck_sql, unwatched, unwatched_any
from .sql import CHUNK, Statement, chunks, marks, on_thread, run_statements

if TYPE_CHECKING:
    from .db import Store

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
class Orders:
    """The snapshot: load, save, track, untrack, and the reads of status and scheduling."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn = store.conn
        # Pages that passes hold, kept current by `save`, dropped by the other writes.
        self._pages = LivePages()

    def unusable(self, exc: sqlite3.Error) -> StoreError:
        """Record a failed statement in the store's health; return the error to raise."""
        return self._store.unusable(exc)

    async def page(
        self,
        source: Source,
        account: str,
        *,
        after: int = 0,
        limit: int = 5000,
        settled_since: float | None = None,
    ) -> Page:
        """Return the next page of orders not in an end state, in storage order after the
        position `after`, but those no longer watched (`unwatched`, `settled_since`).

        Storage (rowid) order rather than id order: a batch then rewrites neighbouring rows,
        a few database pages instead of one page per order.
        """
        # Before the rows: a write landing while they are read makes the page stale.
        read = self._pages.reading((source, account))
        try:
            return await self._page(read, source, account, after, limit, settled_since)
        finally:
            self._pages.done(read)

    async def _page(
        self,
        read: Reading,
        source: Source,
        account: str,
        after: int,
        limit: int,
        settled_since: float | None,
    ) -> Page:
        version = await self._store.data_version()  # before the rows: a later write is seen
        # Through the index of open orders (migration 9), which lists an account's in rowid
        # order: the rowid range alone would read every ended order on the way.
        unwatched_sql, unwatched_params = unwatched(source, settled_since)
        sql = (
            f"SELECT {COLUMNS}, id FROM orders INDEXED BY orders_open WHERE source = ? "
            f"AND account = ? AND end_state = 0 AND id > ? AND NOT {unwatched_sql} "
            "ORDER BY id LIMIT ?"
        )
        params = (source, account, after, *unwatched_params, limit)
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
        self.drop_pages()
        return added

    def submitted_statement(
        self, source: Source, account: str, order_id: str, reference: str | None, now: float
    ) -> tuple[str, tuple[object, ...]]:
        """The statement tracking an order whose submit named its id (`order_rows.SUBMITTED`),
        committed with the caller's in one hand-off; the pages are dropped, as by `track`."""
        self.drop_pages()
        return SUBMITTED, (source, account, order_id, reference, now, now)

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
        self.drop_pages()
        return cur.rowcount

    def drop_pages(self, of: Owner | None = None) -> None:
        """Make every page stale (orders were added or deleted: track, untrack, retention), or
        those of one account `of` (source, account), the only ones holding its rows."""
        # A page must hold only rows that exist: `save` counts a status change of a page's row
        # without reading it again. Simpler to read them all again than to follow.
        self._pages.drop(of)

    async def open_ids(
        self,
        source: Source,
        account: str,
        *,
        after: int = 0,
        limit: int = 5000,
        settled_since: float | None = None,
    ) -> tuple[list[str], int]:
        """Return ids of orders not in an end state but those no longer watched (`unwatched`,
        `settled_since`), in storage order after the position `after`, and the position to
        continue from (keyset pages)."""
        # As `page`, through the index of open orders: the account's key would read its ended
        # orders too.
        unwatched_sql, unwatched_params = unwatched(source, settled_since)
        sql = (
            "SELECT order_id, id FROM orders INDEXED BY orders_open WHERE source = ? "
            f"AND account = ? AND end_state = 0 AND id > ? AND NOT {unwatched_sql} "
            "ORDER BY id LIMIT ?"
        )
        params = (source, account, after, *unwatched_params, limit)
        rows = list(await self._conn.execute_fetchall(sql, params))
        return [r[0] for r in rows], (int(rows[-1][1]) if rows else after)

    async def due(
        self, source: Source, account: str, now: float, limit: int, settled_since: float
    ) -> list[OrderState]:
        """Return orders whose next check is due, oldest first (uses the partial index), but
        those no longer watched (`unwatched`, `settled_since`): a check planned while the
        watch ran, or by a longer `watch_settled`, is not made once it has ended."""
        sql, params = due_sql(source, settled_since)
        return await self._states(sql, (now, source, account, *params, limit))

    async def answered(
        self, source: Source, account: str, limit: int, settled_since: float
    ) -> list[OrderState]:
        """Return up to `limit` open, watched orders whose last check answered a status
        (`ANSWERED_SQL`), due or not, in storage order: the same ones each time while they stay
        so."""
        sql, params = answered_sql(source, settled_since)
        return await self._states(sql, (source, account, *params, limit))

    async def with_status(
        self, source: Source, account: str, statuses: Sequence[str]
    ) -> list[OrderState]:
        """Return followed orders not in an end state whose last seen status is one of
        `statuses`."""
        # Through the index of open orders: the account's key would read its closed ones too.
        sql = (
            f"SELECT {COLUMNS} FROM orders INDEXED BY orders_due WHERE end_state = 0 "
            f"AND source = ? AND account = ? AND status IN ({marks(len(statuses))})"
        )
        return await self._states(sql, (source, account, *statuses))

    async def by_reference(self, reference: str) -> list[OrderState]:
        """Return followed CCV orders carrying an external reference, now or before CCV
        answered another (an alias, `add_aliases`)."""
        sql = (
            f"SELECT {COLUMNS} FROM orders WHERE external_reference = ? UNION "
            f"SELECT {COLUMNS} FROM orders WHERE (source, account, order_id) IN "
            "(SELECT source, account, order_id FROM order_aliases WHERE reference = ?)"
        )
        return await self._states(sql, (reference, reference))

    async def add_aliases(self, references: Sequence[tuple[OrderKey, str, str]]) -> None:
        """Keep each (order, reference it carried, reference answered)'s replaced reference as
        an alias of the order, inside the caller's transaction: CCV calls a notification URL
        once, and the URL names the reference the order was tracked or submitted with."""
        await self._conn.executemany(
            "INSERT OR IGNORE INTO order_aliases (reference, source, account, order_id) "
            "VALUES (?, ?, ?, ?)",
            [(tracked, *key) for key, tracked, _ in references],
        )

    async def snapshot(
        self, source: str | None = None, status: str | None = None
    ) -> list[OrderState]:
        """Return the snapshot, optionally filtered (read by `order_pages.pages`)."""
        return [s async for p in order_pages.pages(self._store, source, status) for s in p]

    async def _states(self, sql: str, params: Sequence[Any]) -> list[OrderState]:
        # One call into the database thread (execute, fetch and close would be three).
        return [order_rows.state(r) for r in await self._conn.execute_fetchall(sql, params)]

    async def counts(self) -> dict[tuple[str, str, str | None], int]:
        """Return followed orders counted by (source, account, status)."""
        async with self._conn.execute(counts.COUNT_SQL) as cur:
            return {(r[0], r[1], r[2]): r[3] for r in await cur.fetchall()}

    async def open_count(self, source: Source, account: str, *, settled_since: float) -> int:
        """Return how many of an account's orders are not in an end state and still watched
        (`unwatched`): those a catch-up asks. One no longer watched is never checked again and
        waits for retention as an ended one."""
        unwatched_sql, unwatched_params = unwatched(source, settled_since)
        sql = (
            "SELECT count(*) FROM orders INDEXED BY orders_open "
            f"WHERE source = ? AND account = ? AND end_state = 0 AND NOT {unwatched_sql}"
        )
        rows = await self._conn.execute_fetchall(sql, (source, account, *unwatched_params))
        return int(next(iter(rows))[0])

    async def stuck_counts(
        self, now: float, limits: Mapping[tuple[str, str], float]
    ) -> dict[tuple[str, str], int]:
        """Return orders reported stuck and unchanged since, per (source, account), of those
        stuck by `limits` ((source, status) -> `stuck_after`, the config running now): in a
        status that has a limit, for at least that long. A limit removed (0) or raised since
        the report leaves the order out."""
        if not limits:
            return {}
        sql, params = stuck_sql(now, limits)
        async with self._conn.execute(sql, params) as cur:
            return {(r[0], r[1]): r[2] for r in await cur.fetchall()}

    async def failing_counts(self) -> dict[tuple[str, str], int]:
        """Return orders whose last check failed, per (source, account)."""
        async with self._conn.execute(FAILING_SQL) as cur:
            return {(r[0], r[1]): r[2] for r in await cur.fetchall()}

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
        self.drop_pages(of=(source, account))

    async def postpone(
        self, source: Source, account: str, planned: Sequence[tuple[str, float]]
    ) -> None:
        """Move orders' next checks to the times given (order id, time), never earlier: checks
        not made (a circuit breaker's pass left them unasked), so no answer and no failure."""
        async with self._store.transaction():
            await self._conn.executemany(
                "UPDATE orders SET next_check_at = max(next_check_at, ?) "
                "WHERE source = ? AND account = ? AND order_id = ? AND end_state = 0",
                [(at, source, account, order_id) for order_id, at in planned],
            )
            # A pass holding a page of these rows would write their old next checks back.
            self.drop_pages(of=(source, account))

    async def due_counts(
        self, due_by: float, *, now: float, watched: Mapping[tuple[str, str], float]
    ) -> dict[tuple[str, str], int]:
        """Return orders whose check is due by `due_by`, by (source, account) (uses the
        partial index), but those no longer watched at `now` (`unwatched_any`, `watched`):
        they are never checked again."""
        unwatched_sql, unwatched_params = unwatched_any(now, watched)
        sql = (
            "SELECT source, account, count(*) FROM orders INDEXED BY orders_due "
            f"WHERE end_state = 0 AND next_check_at <= ? AND NOT {unwatched_sql} GROUP BY 1, 2"
        )
        rows = await self._conn.execute_fetchall(sql, (due_by, *unwatched_params))
        return {(r[0], r[1]): r[2] for r in rows}
