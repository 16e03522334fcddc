"""Followed orders counted per (source, account, status), kept in the transaction of every
order write.

Every scrape of /metrics and every `reconciler status` wants these counts; a GROUP BY over the
orders table reads every row (seconds at a million orders). The counts change in the transaction
of the order write itself, so they cannot drift, and a reader reads a few rows whatever the size
of the store. Rows that come and go (track, a discovered order, untrack, retention) are counted
by triggers. A status change is counted by `orders.save`, once per batch: one row per (source,
account, status) whose count moved (`changes`), where a trigger ran two statements per changed
order (in a first catch-up, every order).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from .sql import values

Key = tuple[str, str, str]  # (source, account, status or '')

# The counts table's key cannot hold NULL (an order not checked yet has no status): such orders
# are counted under '' (no provider has an empty status).
_NEW = "new.source, new.account, coalesce(new.status, '')"
_OLD_MATCH = "source = old.source AND account = old.account AND status = coalesce(old.status, '')"
_INCREMENT = (
    f"INSERT INTO order_counts (source, account, status, n) VALUES ({_NEW}, 1) "
    "ON CONFLICT (source, account, status) DO UPDATE SET n = n + 1"
)
_DECREMENT = f"UPDATE order_counts SET n = n - 1 WHERE {_OLD_MATCH}"

# A migration script: `migrations.statements` keeps each trigger body's ";" inside its statement.
# Migration 9 replaces its update trigger (UPDATE_MIGRATION).
MIGRATION = f"""
CREATE TABLE order_counts (
    source TEXT NOT NULL,
    account TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (source, account, status)
) WITHOUT ROWID;
INSERT INTO order_counts (source, account, status, n)
    SELECT source, account, coalesce(status, ''), count(*) FROM orders GROUP BY 1, 2, 3;
CREATE TRIGGER order_counts_insert AFTER INSERT ON orders BEGIN
    {_INCREMENT};
END;
CREATE TRIGGER order_counts_delete AFTER DELETE ON orders BEGIN
    {_DECREMENT};
END;
CREATE TRIGGER order_counts_update AFTER UPDATE OF source, account, status ON orders
    WHEN old.status IS NOT new.status OR old.source IS NOT new.source
        OR old.account IS NOT new.account
BEGIN
    {_DECREMENT};
    {_INCREMENT};
END
"""

# Status changes are counted by `orders.save`. The one other write that may change a status is
# the upsert of an order `save` did not find (its DO UPDATE), the only statement that sets
# tracked_at on an existing row: a trigger on that column counts it and never fires on the hot
# path (a write back by rowid leaves tracked_at alone).
UPDATE_MIGRATION = f"""
DROP TRIGGER order_counts_update;
CREATE TRIGGER order_counts_upsert AFTER UPDATE OF tracked_at ON orders
    WHEN old.status IS NOT new.status OR old.source IS NOT new.source
        OR old.account IS NOT new.account
BEGIN
    {_DECREMENT};
    {_INCREMENT};
END
"""


# A status change of one order: (source, account, status before, status after).
Move = tuple[str, str, str | None, str | None]


def changes(moved: Iterable[Move]) -> tuple[str, list[object]] | None:
    """Return the statement and parameters that add the status changes `moved` to the counts,
    or None when nothing moved."""
    # Counted by kind first, in C: in a first catch-up every order of a batch moves, and most
    # of them from one status to one of a few others.
    moves: Counter[Key] = Counter()
    for (source, account, before, after), n in Counter(moved).items():
        moves[(source, account, before or "")] -= n
        moves[(source, account, after or "")] += n
    rows = [(*k, n) for k, n in moves.items() if n]
    if not rows:
        return None
    sql = (
        f"INSERT INTO order_counts (source, account, status, n) VALUES {values(len(rows), 4)} "
        "ON CONFLICT (source, account, status) DO UPDATE SET n = n + excluded.n"
    )
    return sql, [p for row in rows for p in row]


# A key whose orders are all gone keeps a row of 0 until retention's next run deletes it
# (retention._prune_counts): skip them meanwhile.
COUNT_SQL = "SELECT source, account, nullif(status, ''), n FROM order_counts WHERE n > 0"
# The reference twin: what the kept counts must always equal.
FULL_COUNT_SQL = "SELECT source, account, status, count(*) FROM orders GROUP BY 1, 2, 3"
