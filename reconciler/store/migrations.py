"""The schema: forward-only migrations and how they run (`migrate`, `outdated`); the one rebuild
of a table that a migration rewritten in place left behind in older stores is store/rowid.py's."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator

import aiosqlite

from ..logs import fields
from . import counts
from .errors import StoreError

log = logging.getLogger("reconciler.store")

# Forward-only migrations. An upgrade runs each with its `PRAGMA user_version` bump in one
# transaction; a new store runs them all in one, its version set to the last.
# Statements are split on ";", so comments inside them must not contain one.
MIGRATIONS: tuple[str, ...] = (
    # 1: initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE orders (
        -- a rowid table: its indexes then carry an integer, not the whole text key
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        account TEXT NOT NULL,
        order_id TEXT NOT NULL,
        status TEXT,
        external_reference TEXT,
        first_seen REAL,
        last_changed REAL,
        last_checked REAL,
        end_state INTEGER NOT NULL DEFAULT 0,
        not_found INTEGER NOT NULL DEFAULT 0,
        failure_streak INTEGER NOT NULL DEFAULT 0,
        version INTEGER NOT NULL DEFAULT 0,
        next_check_at REAL NOT NULL DEFAULT 0,
        interval_s REAL,
        stuck_version INTEGER,
        tracked_at REAL,
        UNIQUE (source, account, order_id)
    );
    CREATE INDEX orders_due ON orders (next_check_at) WHERE end_state = 0;
    CREATE INDEX orders_reference ON orders (external_reference)
        WHERE external_reference IS NOT NULL;
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        account TEXT NOT NULL,
        order_id TEXT NOT NULL,
        previous_status TEXT,
        status TEXT NOT NULL,
        at REAL NOT NULL,
        via TEXT NOT NULL,
        -- events.id is unique already: no second index on random text on the hot path
        event_id TEXT NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        time REAL NOT NULL,
        source TEXT NOT NULL,
        account TEXT NOT NULL,
        order_id TEXT,
        severity TEXT NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX events_time ON events (time);
    CREATE TABLE deliveries (
        sink TEXT NOT NULL,
        event_seq INTEGER NOT NULL REFERENCES events (seq),
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        last_error TEXT,
        delivered_at REAL,
        PRIMARY KEY (sink, event_seq)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_due ON deliveries (sink, next_attempt_at, event_seq)
        WHERE state = 'pending';
    CREATE TABLE sources (
        source TEXT NOT NULL,
        account TEXT NOT NULL,
        failing INTEGER NOT NULL DEFAULT 0,
        failure_streak INTEGER NOT NULL DEFAULT 0,
        episode INTEGER NOT NULL DEFAULT 0,
        last_success REAL,
        last_failure REAL,
        last_error TEXT,
        PRIMARY KEY (source, account)
    ) WITHOUT ROWID;
    CREATE TABLE sinks (
        name TEXT PRIMARY KEY,
        disabled_at REAL,
        reason TEXT
    ) WITHOUT ROWID;
    CREATE TABLE pending_references (
        account TEXT NOT NULL,
        external_reference TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (account, external_reference)
    ) WITHOUT ROWID;
    """,
    # 2: the history is the events table (every transition has its event, in order); the
    # transitions table repeated it row for row
    "DROP TABLE transitions",
    # 3: CCV submissions through the integration API, recorded before they are forwarded
    # (store/submissions.py owns this table)
    """
    CREATE TABLE submissions (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        external_reference TEXT NOT NULL,
        state TEXT NOT NULL,
        order_id TEXT,
        http_status INTEGER,
        reason TEXT,
        created_at REAL NOT NULL,
        closed_at REAL
    );
    CREATE UNIQUE INDEX submissions_live ON submissions (account, external_reference)
        WHERE state != 'failed';
    CREATE INDEX submissions_open ON submissions (state) WHERE state IN ('sending', 'uncertain')
    """,
    # 4: when an order found before first answered "not found"; it is reported only when a later
    # check confirms it. CCV `Failed` is no end state any more: watched like settled ones, due
    # from the upgrade (a next check of 0 is an order never checked, due since tracked)
    """
    ALTER TABLE orders ADD COLUMN missing_since REAL;
    UPDATE orders SET end_state = 0, next_check_at = (julianday('now') - 2440587.5) * 86400.0
    WHERE source = 'ccv' AND status = 'Failed'
    """,
    # 5: /metrics counts these on every scrape; partial indexes hold only the few rows counted,
    # so neither count reads the whole table (millions of rows after a year)
    """
    CREATE INDEX deliveries_dead ON deliveries (sink) WHERE state = 'dead';
    CREATE INDEX orders_stuck ON orders (source, account)
        WHERE stuck_version = version AND end_state = 0
    """,
    # 6: CCNow order actions (ship, cancel, track, adjust), recorded before they are sent and
    # closed with CCNow's answer (store/commands.py)
    """
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        order_id TEXT NOT NULL,
        action TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        notes TEXT,
        amount TEXT,
        trackname TEXT,
        tracknumber TEXT,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        answer TEXT,
        created_at REAL NOT NULL,
        closed_at REAL
    );
    CREATE UNIQUE INDEX commands_key ON commands (account, idempotency_key);
    CREATE INDEX commands_open ON commands (state, next_attempt_at)
        WHERE state IN ('queued', 'sending', 'uncertain')
    """,
    # 7: followed orders counted per status, kept by triggers (store/counts.py)
    counts.MIGRATION,
    # 8: when an account started failing, for `status`, without reading every event
    """
    CREATE INDEX events_source_failed ON events (source, account, seq)
        WHERE type = 'source.failed'
    """,
    # 9: a catch-up reads an account's open orders in storage order, and retention finds the
    # ended orders older than its window, through indexes of those rows only: neither reads the
    # ended orders of a year (a million rows) to find the few it wants. The expression is
    # retention's own, word for word, which is what lets SQLite use the index
    """
    CREATE INDEX orders_open ON orders (source, account) WHERE end_state = 0;
    CREATE INDEX orders_ended ON orders (coalesce(last_changed, tracked_at, 0))
        WHERE end_state = 1
    """,
    # 10: status changes counted once per batch by `orders.save`, not by a trigger per order
    counts.UPDATE_MIGRATION,
    # 11: `status` counts the orders whose last check failed through an index of those few
    # rows; an order that answers only has its condition evaluated, no index entry written
    """
    CREATE INDEX orders_failing ON orders (source, account) WHERE failure_streak > 0
    """,
    # 12: when `replay` queued a delivery again: its max_age counts from then, not from the
    # event's creation, else a replayed event older than max_age would get one attempt only
    """
    ALTER TABLE deliveries ADD COLUMN requeued_at REAL
    """,
    # 13: a running daemon learns that `replay` (another process) queued a sink's events again
    # from the latest replay time, read through an index of the replayed rows only
    """
    CREATE INDEX deliveries_requeued ON deliveries (sink, requeued_at)
        WHERE requeued_at IS NOT NULL
    """,
    # 14: the references an order carried before CCV answered another: a notification URL
    # signed for the old one still finds it (orders.py `add_aliases`, `by_reference`). Keyed by
    # the order's key (stores with no rowid yet reach this before `give_orders_a_rowid`); they go
    # with its row (untrack, retention): one tracked again is not found by a predecessor's name
    """
    CREATE TABLE order_aliases (
        reference TEXT NOT NULL,
        source TEXT NOT NULL,
        account TEXT NOT NULL,
        order_id TEXT NOT NULL,
        PRIMARY KEY (reference, source, account, order_id)
    ) WITHOUT ROWID;
    CREATE INDEX order_aliases_order ON order_aliases (source, account, order_id);
    CREATE TRIGGER order_aliases_delete AFTER DELETE ON orders BEGIN
        DELETE FROM order_aliases
            WHERE source = old.source AND account = old.account AND order_id = old.order_id;
    END
    """,
    # 15: when CCNow first answered a command without a line settling its order: a day later
    # it is uncertain (writes/ccnow_actions.py), counted from that answer, not from a
    # maintenance it was queued through
    "ALTER TABLE commands ADD COLUMN unsettled_since REAL",
    # 16: when a post of a command may first have reached CCNow (an answer lost or settling
    # nothing, a stop while it was out): only then is an order found where the action puts it
    # "taken by an earlier attempt" (writes/ccnow_actions.py); one posted before may have.
    """
    ALTER TABLE commands ADD COLUMN maybe_reached_at REAL;
    UPDATE commands SET maybe_reached_at = created_at WHERE attempts > 0
    """,
    # 17: whether an account's failure is the provider's own word about orders (error lines,
    # "not found"), kept until it recovers (poller/health.py); one failing so has it
    """
    ALTER TABLE sources ADD COLUMN failed_on_own_word INTEGER NOT NULL DEFAULT 0;
    UPDATE sources SET failed_on_own_word = 1 WHERE failing != 0
        AND (last_error = 'every check failed (order_error)'
            OR last_error LIKE '% orders not found at once')
    """,
    # 18: retention finds the settled orders (CCV `Failed`, CCNow `completed`, `refunded`, never
    # checked again) older than its window through an index of those rows only, as the ended
    # ones (9); retention's SETTLED_ORDERS names this text word for word. OR, not IN (...):
    # SQLite evaluates an IN list in a partial index's WHERE through a temporary b-tree for
    # every order update (a first catch-up's database thread: 12 % more work)
    """
    CREATE INDEX orders_settled ON orders (coalesce(last_changed, tracked_at, 0))
        WHERE end_state = 0 AND (status = 'Failed' OR status = 'completed' OR status = 'refunded')
    """,
    # 19: when the request whose answer an order's row holds was sent: one asked before it
    # changes nothing (diff.stale). Rows of older stores have none, and take their next answer
    "ALTER TABLE orders ADD COLUMN asked_at REAL",
    # 20: when CCNow's answers that settle nothing about a command began, lines saying CCNow is
    # down included (which start its day again): three days later it is uncertain
    # (writes/ccnow_outcome.py). A command in its day at the upgrade has had them since then
    """
    ALTER TABLE commands ADD COLUMN held_since REAL;
    UPDATE commands SET held_since = unsettled_since WHERE state = 'queued'
    """,
    # 21: a CCNow status word an older release stored in another case (`COMPLETED`) is the
    # documented word (sources/ccnow_answer.py), else the next poll raises a change that is none.
    # The document's words written out (they must not change with the code), CCNow rows only;
    # not the end states (an older release took `CANCELED` for an unknown word: the change its
    # next poll raises is news). The counts follow (`orders.save` counts an UPDATE of a status)
    """
    UPDATE orders SET status = lower(status)
        WHERE source = 'ccnow' AND status != lower(status) AND lower(status) IN (
            'received', 'paypal_hold', 'processing', 'vacation_hold', 'preorder_hold',
            'getman_hold', 'pending', 'mark_canceled', 'mark_shipped', 'completed', 'refunded');
    DELETE FROM order_counts WHERE source = 'ccnow';
    INSERT INTO order_counts (source, account, status, n)
        SELECT source, account, coalesce(status, ''), count(*) FROM orders
            WHERE source = 'ccnow' GROUP BY 1, 2, 3
    """,
    # 22: when a failing account's backoff period began, the failure that last advanced its
    # streak (model.SourceState). One failing at the upgrade counts it from its last failure
    """
    ALTER TABLE sources ADD COLUMN backoff_from REAL;
    UPDATE sources SET backoff_from = last_failure WHERE failing != 0
    """,
    # 23: a reference's failed submissions, latest first (submissions.find), read for each CCV
    # notification: one a person closed as never sent is then settled
    "CREATE INDEX submissions_failed ON submissions (account, external_reference) "
    "WHERE state = 'failed'",
    # 24: CCV's `Location` of a submit's answer (a 303's, a 201's), masked: where the order is
    "ALTER TABLE submissions ADD COLUMN location TEXT",
    # 25: when a CCV notification for the reference came while the submission was open and did
    # not settle it (a 2xx answered it): `ccv resolve --not-sent` is refused (submissions.py)
    """
    ALTER TABLE submissions ADD COLUMN notified_at REAL;
    UPDATE submissions AS s SET notified_at = (SELECT max(received_at) FROM pending_references p
        WHERE (p.account, p.external_reference) = (s.account, s.external_reference)
        AND p.received_at >= s.created_at) WHERE state IN ('sending', 'uncertain')
    """,
    # 26: CCV orders a notification named whose check has not answered yet (notified_orders.py):
    # CCV calls once, so the notification stands until a check of the order answers; and
    # whether an account's checks failed of the key refused (a 401), which the probe ends
    """
    CREATE TABLE notified_orders (
        source TEXT NOT NULL,
        account TEXT NOT NULL,
        order_id TEXT NOT NULL,
        notified_at REAL NOT NULL,
        next_at REAL NOT NULL,
        PRIMARY KEY (source, account, order_id)
    ) WITHOUT ROWID;
    ALTER TABLE sources ADD COLUMN failed_on_key INTEGER NOT NULL DEFAULT 0
    """,
    # 27: a succeeded or resolved submission whose order CCV then ended as `Canceled` gives its
    # reference up to the next submit of it (submissions.record): superseded, it leaves the
    # index that keeps one live submission per reference
    """
    ALTER TABLE submissions ADD COLUMN superseded_at REAL;
    DROP INDEX submissions_live;
    CREATE UNIQUE INDEX submissions_live ON submissions (account, external_reference)
        WHERE state != 'failed' AND superseded_at IS NULL
    """,
    # 28: a notification kept for an order goes with the order (untracked, pruned): it stood
    # for ever, and a track of the order again made that old call due as a new one
    """
    DELETE FROM notified_orders WHERE NOT EXISTS (SELECT 1 FROM orders AS o
        WHERE (o.source, o.account, o.order_id)
            = (notified_orders.source, notified_orders.account, notified_orders.order_id));
    CREATE TRIGGER notified_orders_delete AFTER DELETE ON orders BEGIN
        DELETE FROM notified_orders
            WHERE source = old.source AND account = old.account AND order_id = old.order_id;
    END
    """,
    # 29: when a sink name holding delivery rows was first found unconfigured: retention lets
    # go of its rows a week from then (store/gone_sinks.py). A name unconfigured at the upgrade
    # is found by the first start or prune after it
    "CREATE TABLE gone_sinks (name TEXT PRIMARY KEY, since REAL NOT NULL) WITHOUT ROWID",
    # 30: how a CCNow command's withdrawal was asked while its post was out (`by hand`, `by
    # untrack`; store/withdraw.py): a post that ends without CCNow's definite answer closes
    # it withdrawn instead of queuing it again
    "ALTER TABLE commands ADD COLUMN withdraw_asked TEXT",
    # 31: until when an account rests because its provider asked so (a 429's or 503's
    # Retry-After longer than a request's retries wait): a restart or a catch-up honours it too
    "ALTER TABLE sources ADD COLUMN rest_until REAL",
    # 32: the status that turned a CCNow command's post away, `HTTP 429` (store/withdraw.py)
    "ALTER TABLE commands ADD COLUMN turned_away TEXT",
    # 33: a CCNow command's first post a proxy's 503 may hide CCNow ran (store/withdraw.py)
    "ALTER TABLE commands ADD COLUMN hidden_at REAL",
)
SCHEMA_VERSION = len(MIGRATIONS)


async def outdated(conn: aiosqlite.Connection, version: int) -> str | None:
    """Say why this release upgrades the schema, if it does: a migration to run, or the
    `orders` table of stores made before migration 1 gave it a rowid (`give_orders_a_rowid`).
    A newer release's schema is refused."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {version} is newer than this program's {SCHEMA_VERSION}; "
            "upgrade reconciler"
        )
    if version < SCHEMA_VERSION:
        return f"database schema version {version} is older than this program's {SCHEMA_VERSION}"
    rowid = "SELECT 1 FROM pragma_table_info('orders') WHERE name = 'id'"
    old = f"database schema version {version} has the orders table of an older release"
    return None if await conn.execute_fetchall(rowid) else old


async def migrate(conn: aiosqlite.Connection) -> None:
    """Run the migrations the database still lacks, each in its own transaction with its
    version read inside it (another writer may have run some), a new store's all in one (a
    commit and its fsync each: 0.2-0.6 s of a first open). An upgrade logs `store.upgraded`."""
    first: int | None = None
    while True:
        # executescript would COMMIT first; run statements one by one inside our transaction.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            rows = await conn.execute_fetchall("PRAGMA user_version")
            number = int(next(iter(rows))[0]) + 1
            first = number - 1 if first is None else first
            if (start := number) <= SCHEMA_VERSION:
                number = SCHEMA_VERSION if start == 1 else start
                for statement in (s for m in MIGRATIONS[start - 1 : number] for s in statements(m)):
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {number:d}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        if number >= SCHEMA_VERSION:
            if first and first < SCHEMA_VERSION:
                upgraded = fields(schema_from=first, schema_to=SCHEMA_VERSION)
                log.info("store.upgraded", extra=upgraded)
            return


def statements(script: str) -> Iterator[str]:
    """Split a migration on ";", keeping a trigger body's statements inside its CREATE TRIGGER."""
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip("; \n"):
                yield pending
            pending = ""
    if pending.strip("; \n"):
        yield pending  # not a complete statement: SQLite says what is wrong with it
