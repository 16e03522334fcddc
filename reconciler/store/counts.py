"""Followed orders counted per (source, account, status), kept by triggers.

Every scrape of /metrics and every `reconciler status` wants these counts; a GROUP BY over the
orders table reads every row (seconds at a million orders). The triggers keep the counts in the
transaction of the order write itself, whoever writes (apply, track, untrack, retention), so the
counts cannot drift, and a reader reads a few rows whatever the size of the store. An order's
update costs nothing more unless its status changes.
"""

from __future__ import annotations

# The counts table's key cannot hold NULL (an order not checked yet has no status): such orders
# are counted under '' (no provider has an empty status).
_NEW = "new.source, new.account, coalesce(new.status, '')"
_OLD_MATCH = "source = old.source AND account = old.account AND status = coalesce(old.status, '')"
_INCREMENT = (
    f"INSERT INTO order_counts (source, account, status, n) VALUES ({_NEW}, 1) "
    "ON CONFLICT (source, account, status) DO UPDATE SET n = n + 1"
)
_DECREMENT = f"UPDATE order_counts SET n = n - 1 WHERE {_OLD_MATCH}"

# A migration script: `db._statements` keeps each trigger body's ";" inside its statement.
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

# Keys whose orders are all gone keep a row of 0 until one comes back: skip them.
COUNT_SQL = "SELECT source, account, nullif(status, ''), n FROM order_counts WHERE n > 0"
# The reference twin: what the kept counts must always equal.
FULL_COUNT_SQL = "SELECT source, account, status, count(*) FROM orders GROUP BY 1, 2, 3"
