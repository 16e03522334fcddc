"""The reads of the `orders` table that no page holds: ids, due and answered orders, the
snapshot, and the counts of status and scheduling (`Orders` adds the page a pass works on and
the writes that keep it current, store/orders.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..model import OrderState, Source
from . import counts, order_pages, order_rows
from .errors import StoreError, guarded
from .order_rows import COLUMNS
from .order_sql import (
    FAILING_SQL,
    CatchUpSince,
    answered_sql,
    catch_up_due_sql,
    due_sql,
    stuck_sql,
    unwatched,
    unwatched_any,
)
from .sql import marks

if TYPE_CHECKING:
    from .db import Store


@guarded
class OrderReads:
    """Reads of the snapshot, for status, scheduling and the commands."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn = store.conn

    def unusable(self, exc: sqlite3.Error) -> StoreError:
        """Record a failed statement in the store's health; return the error to raise."""
        return self._store.unusable(exc)

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
        self,
        source: Source,
        account: str,
        now: float,
        limit: int,
        settled_since: float,
        *,
        catch_up: CatchUpSince | None = None,
    ) -> list[OrderState]:
        """Return orders whose next check is due, oldest first (uses the partial index), but
        those no longer watched (`unwatched`, `settled_since`): a check planned while the
        watch ran, or by a longer `watch_settled`, is not made once it has ended. `catch_up`:
        a catch-up of the account runs, and only the due orders it leaves to a tick count
        (`order_sql.catch_up_due_sql`): up to `limit` of those, however many of its own are
        due (but for those falling due while it runs, a bound of them: see there)."""
        if catch_up is not None:
            sql, params = catch_up_due_sql(source, account, now, limit, settled_since, catch_up)
            return await self._states(sql, params)
        sql, params = due_sql(source, settled_since)
        return await self._states(sql, (now, source, account, *params, limit))

    async def last_id(self) -> int:
        """Return the last order row's id (0 for none): a row added later has a greater one."""
        rows = await self._conn.execute_fetchall("SELECT coalesce(max(id), 0) FROM orders")
        return int(next(iter(rows))[0])

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
