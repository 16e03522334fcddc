"""The one rebuild of a table that a migration rewritten in place left behind in older stores:
`orders` WITHOUT ROWID, made before migration 1 gave it a rowid."""

from __future__ import annotations

import aiosqlite


async def give_orders_a_rowid(conn: aiosqlite.Connection) -> None:
    """Rebuild `orders` as the rowid table migration 1 makes, in one transaction, if it is not.

    Migration 1 was rewritten in place at a8f2eda: stores made before have `orders` WITHOUT
    ROWID, keyed by (source, account, order_id), at every later version. SQLite's generalized
    ALTER TABLE: a new table (`id INTEGER PRIMARY KEY`, the key UNIQUE) takes the rows, the
    old one's name, indexes and triggers; no trigger fires: order_counts stay as they are."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        columns = list(await conn.execute_fetchall("PRAGMA table_info(orders)"))
        if not any(c[1] == "id" for c in columns):
            await _rebuild_orders(conn, columns)
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


async def _rebuild_orders(conn: aiosqlite.Connection, columns: list[aiosqlite.Row]) -> None:
    kept = await conn.execute_fetchall(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'orders' "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL"
    )
    # table_info: (cid, name, type, notnull, dflt_value, pk)
    names = ", ".join(_quoted(c[1]) for c in columns)
    definitions = [
        f"{_quoted(c[1])} {c[2]}"
        + (" NOT NULL" if c[3] else "")
        + (f" DEFAULT {c[4]}" if c[4] is not None else "")
        for c in columns
    ]
    await conn.execute(
        f"CREATE TABLE orders_rowid (id INTEGER PRIMARY KEY, {', '.join(definitions)}, "
        "UNIQUE (source, account, order_id))"
    )
    await conn.execute(f"INSERT INTO orders_rowid ({names}) SELECT {names} FROM orders")
    await conn.execute("DROP TABLE orders")
    await conn.execute("ALTER TABLE orders_rowid RENAME TO orders")
    for (sql,) in kept:
        await conn.execute(sql)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
